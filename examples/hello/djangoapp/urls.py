"""URL routes (and the one view) of the hello-world Django project."""

from django.http import HttpResponse
from django.urls import path


def hello(request):
    return HttpResponse("Hello, world! (Django)\n", content_type="text/plain; charset=utf-8")


urlpatterns = [path("hello", hello)]

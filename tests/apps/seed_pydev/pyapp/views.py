import pydev


def health(request):
    response = pydev.Response()
    response.set_body("pyapp is healthy")
    return response

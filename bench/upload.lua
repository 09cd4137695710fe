-- wrk script for the upload workload: every request POSTs a body of BENCH_BODY_BYTES bytes
-- (default 1 MiB) as application/octet-stream.
local size = tonumber(os.getenv("BENCH_BODY_BYTES") or "") or 1048576
wrk.method = "POST"
wrk.body = string.rep("u", size)
wrk.headers["Content-Type"] = "application/octet-stream"

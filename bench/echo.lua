-- wrk script: POST a body to the URL's path (bench uses /echo, which sends the body back).
--   wrk -t1 -c64 -d10s -s bench/echo.lua http://127.0.0.1:8080/echo [-- SIZE]
-- SIZE defaults to 4096 bytes. The request is built once in init() and sent as is every time.

local req

init = function(args)
   local size = tonumber(args[1]) or 4096
   local headers = {}
   headers["Content-Type"] = "application/octet-stream"
   req = wrk.format("POST", nil, headers, string.rep("x", size))
end

request = function()
   return req
end

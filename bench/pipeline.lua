-- wrk script: HTTP/1.1 pipelining, like TechEmpower's plaintext test.
--   wrk -t1 -c64 -d10s -s bench/pipeline.lua http://127.0.0.1:8080/ [-- DEPTH]
-- Each write sends DEPTH (default 16) copies of the request; wrk sends the next batch when all
-- DEPTH responses have arrived. Note that wrk then records one latency sample per batch.

local batch

init = function(args)
   local depth = tonumber(args[1]) or 16
   local r = {}
   for i = 1, depth do
      r[i] = wrk.format()
   end
   batch = table.concat(r)
end

request = function()
   return batch
end

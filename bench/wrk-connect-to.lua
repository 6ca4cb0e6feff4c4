-- wrk takes the TLS server name (SNI) and the Host header from the URL's host,
-- and connects to whatever that host resolves to. To send SNI "bench.test"
-- (a name that resolves nowhere) while connecting to 127.0.0.1, run
--   WRK_CONNECT_TO=127.0.0.1 wrk -s bench/wrk-connect-to.lua https://bench.test:PORT/
-- wrk calls wrk.resolve(host, service) once before the run; this replacement
-- looks up WRK_CONNECT_TO instead of the URL's host and keeps the port.
local connect_to = os.getenv("WRK_CONNECT_TO")

wrk.resolve = function(host, service)
  local addrs = wrk.lookup(connect_to or host, service)
  for i = #addrs, 1, -1 do
    if not wrk.connect(addrs[i]) then
      table.remove(addrs, i)
    end
  end
  wrk.addrs = addrs
end

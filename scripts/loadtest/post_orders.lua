-- wrk script: POST /orders for one unit of a random product among
-- 8001-8010 at 9.99, as the Locust scenario does. Requests are rendered
-- once per thread in init(), so wrk spends its CPU sending, not
-- formatting. Used by scripts/bench-wrk.sh:
--
--   wrk -t2 -c50 -d30s --latency -s scripts/loadtest/post_orders.lua \
--       http://127.0.0.1:8081/orders

local first_product, last_product = 8001, 8010
local prepared = 1000
local requests = {}
local next_request = 1

local threads = {}
local counter = 0

function setup(thread)
    counter = counter + 1
    thread:set("id", counter)
    table.insert(threads, thread)
end

function init(args)
    -- Each thread has its own Lua state: seed it apart from the others.
    math.randomseed(os.time() * 1000 + (id or 0))
    local headers = { ["Content-Type"] = "application/json" }
    for i = 1, prepared do
        local body = string.format(
            '{"user_id":%d,"product_id":%d,"quantity":1,"total_amount":9.99}',
            math.random(1, 1000000),
            math.random(first_product, last_product)
        )
        requests[i] = wrk.format("POST", nil, headers, body)
    end
end

function request()
    local r = requests[next_request]
    next_request = next_request % prepared + 1
    return r
end

function done(summary, latency, requests_done)
    local secs = summary.duration / 1e6
    local errors = summary.errors
    io.write("----- post_orders.lua summary -----\n")
    io.write(string.format("requests        %d in %.1f s (%.0f/s)\n",
        summary.requests, secs, summary.requests / secs))
    io.write(string.format("non-2xx/3xx     %d\n", errors.status))
    io.write(string.format("socket errors   connect %d, read %d, write %d, timeout %d\n",
        errors.connect, errors.read, errors.write, errors.timeout))
    for _, p in ipairs({ 50, 90, 99, 99.9 }) do
        io.write(string.format("latency p%-5s  %.2f ms\n", p, latency:percentile(p) / 1000))
    end
    io.write(string.format("latency max     %.2f ms\n", latency.max / 1000))
end

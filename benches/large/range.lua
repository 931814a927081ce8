-- wrk script for scripts/bench-large.sh: each request asks for one random 64 KiB range
-- of the 100 MiB object, aligned on 64 KiB (`Range: bytes=a-b`). Every answer must be a
-- 206 with exactly 65536 bytes of body; anything else is counted and printed in done(),
-- which the script checks (wrk itself counts 206 as a success).
local size = tonumber(os.getenv("RANGE_OBJECT_BYTES") or "104857600")
local span = tonumber(os.getenv("RANGE_BYTES") or "65536")
local count = math.floor(size / span)
local threads = {}

function setup(thread)
    thread:set("id", #threads + 1)
    table.insert(threads, thread)
end

function init(args)
    bad = 0
    good = 0
    math.randomseed(os.time() * 100 + id)
end

function request()
    local a = math.random(0, count - 1) * span
    return wrk.format("GET", nil, { ["Range"] = "bytes=" .. a .. "-" .. (a + span - 1) })
end

function response(status, headers, body)
    if status == 206 and #body == span then
        good = good + 1
    else
        bad = bad + 1
    end
end

function done(summary, latency, requests)
    local g, b = 0, 0
    for _, t in ipairs(threads) do
        g = g + t:get("good")
        b = b + t:get("bad")
    end
    io.write(string.format("range-check: %d good 206 %d-byte responses, %d bad\n", g, span, b))
end

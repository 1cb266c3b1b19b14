//! The Lua scripts of the shared line log: every change is one script, so it is atomic
//! (see the parent module for the keys).

/// Renews or takes the lease (KEYS[1]) and reads the state (KEYS[2]), creating the
/// sequence with its epoch if there is none. ARGV: token, lease ms, new epoch, expiry of
/// a state nobody appended to yet (ms), channel, instance id, quiet ('1': for pushes
/// only, no readers to refresh for: never ask the holder to refresh).
pub(super) const TICK: &str = r"
local role = 'other'
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  role = 'held'
elseif not cur then
  -- Out of memory (noeviction), Redis refuses the SET: read on without the lease.
  local taken = redis.pcall('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  if type(taken) ~= 'table' or not taken.err then role = 'acquired' end
elseif ARGV[7] ~= '1' then
  -- Another replica holds it, and this one has readers: ask the holder to refresh
  -- (it refreshes only for its own readers otherwise).
  redis.call('PUBLISH', ARGV[5], ARGV[6] .. ' want')
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('HSET', KEYS[2], 'epoch', ARGV[3], 'next', 0, 'committed', 0)
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
local s = redis.call('HMGET', KEYS[2], 'epoch', 'next', 'committed', 'meta')
return {role, s[1], s[2], s[3], s[4]}
";

/// The fenced append: checks the token and the expected `next`, then adds the lines.
/// KEYS: lease, state, lines, push hash, push queue. ARGV: token, expected next, meta,
/// commit ('1'), complete ('1'), retain ms, channel, instance id, last chunk ('1'), lease
/// ms (renewed), the push queue's last entry consumed ('' = none), the next seq to apply
/// per push source (a JSON object of decimal strings, '' = none), then one tagged line
/// each. A chunk that is not the last adds lines and moves `next` only: meta, `committed`,
/// the consumed pushes and the message move with the last one, so readers never see part
/// of an append. The queue is trimmed up to the entry consumed (the meta says which).
pub(super) const APPEND: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('FENCED another replica holds the lease') end
local n = tonumber(redis.call('HGET', KEYS[2], 'next') or '-1')
if n ~= tonumber(ARGV[2]) then return redis.error_reply('CONFLICT ' .. n) end
for i = 13, #ARGV do
  n = n + 1
  redis.call('XADD', KEYS[3], n .. '-0', 'l', ARGV[i])
end
-- A long append (many chunks) must not outlast the lease. (Not the first write: out
-- of memory, Redis refuses a script at its first write that needs memory, and lets
-- one that wrote already go on.)
redis.call('PEXPIRE', KEYS[1], ARGV[10])
if ARGV[9] ~= '1' then
  -- Not the last chunk: the lines only (a state nobody appended to expires soon).
  redis.call('HSET', KEYS[2], 'next', n)
  redis.call('PERSIST', KEYS[2])
  redis.call('PERSIST', KEYS[3])
  return n
end
redis.call('HSET', KEYS[2], 'next', n, 'meta', ARGV[3])
if ARGV[4] == '1' then redis.call('HSET', KEYS[2], 'committed', n) end
if ARGV[11] ~= '' then
  local ms, sq = string.match(ARGV[11], '^(%d+)-(%d+)$')
  redis.call('XTRIM', KEYS[5], 'MINID', ms .. '-' .. string.format('%.0f', tonumber(sq) + 1))
end
if ARGV[12] ~= '' then
  for src, seq in pairs(cjson.decode(ARGV[12])) do redis.call('HSET', KEYS[4], 'a:' .. src, seq) end
end
for i = 2, 5 do
  if ARGV[5] == '1' then redis.call('PEXPIRE', KEYS[i], ARGV[6]) else redis.call('PERSIST', KEYS[i]) end
end
if ARGV[4] == '1' then redis.call('PUBLISH', ARGV[7], ARGV[8] .. ' ' .. n) end
return n
";

/// Moves `committed` (after `WAIT`) if the token still holds the lease.
pub(super) const COMMIT: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('FENCED another replica holds the lease') end
local n = tonumber(redis.call('HGET', KEYS[2], 'next') or '-1')
local c = tonumber(ARGV[2])
if c > n then return redis.error_reply('CONFLICT ' .. n) end
if c > tonumber(redis.call('HGET', KEYS[2], 'committed') or '0') then
  redis.call('HSET', KEYS[2], 'committed', c)
  redis.call('PUBLISH', ARGV[3], ARGV[4] .. ' ' .. c)
end
return c
";

/// Renews the lease (KEYS[1]) for ARGV[2] ms, or with 0 gives it up, if this token
/// (ARGV[1]) holds it; 1 if it did.
pub(super) const LEASE: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '0' then
  redis.call('DEL', KEYS[1])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
";

/// Names the sequence anew unless another replica did first.
pub(super) const ROTATE: &str = r"
if redis.call('HGET', KEYS[1], 'epoch') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'epoch', ARGV[2])
  return ARGV[2]
end
return redis.call('HGET', KEYS[1], 'epoch')
";

/// Records which PowerJob app the key prefix belongs to (KEYS[1], a hash), or checks
/// it. ARGV: app name, appId ('' while unknown). Returns {'ok'} or {'name'|'id', the
/// stored value}.
pub(super) const IDENTITY: &str = r"
-- The stored value of `field`, stored first as `value` when there is none.
local function claim(field, value)
  local stored = redis.call('HGET', KEYS[1], field)
  if stored then return stored end
  redis.call('HSET', KEYS[1], field, value)
  return value
end
local name = claim('appName', ARGV[1])
if name ~= ARGV[1] then return {'name', name} end
if ARGV[2] ~= '' then
  local id = claim('appId', ARGV[2])
  if id ~= ARGV[2] then return {'id', id} end
end
return {'ok', ''}
";

/// Queues a pushed batch (docs/API.md "Cluster mode", pushes): checks and records its
/// `(source, seq)` in the instance's push hash (KEYS[2]), appends it to the push queue
/// (KEYS[3], a Stream) when it is new, gives both keys the state's (KEYS[1]) expiry, and
/// publishes `"<id> push"`. ARGV: source ('' = a seed body: no dedup), seq, final
/// ('1'), the queued entry, max sources, expiry while nothing was appended (ms), channel,
/// instance id, arrival time (ms).
///
/// The hash per source: `s:<source>` the next seq expected (every one before it arrived
/// or was given up), `a:<source>` the holder's next seq to apply (written by the append:
/// a batch it skipped is a duplicate when it comes late), `m:<source>` the highest seq
/// seen, `f:<source>` the final one, `q:<source>:<seq>` a batch that arrived ahead of a
/// missing one; `sources` counts them. Replies {'ok', next seq ('-1': seed), ''}, {'dup', next
/// seq, ''}, {'late', next seq, ''} (the log is complete: dropped, nothing recorded),
/// {'final', seq, final seq} (a batch after its source's end) or {'many', max, ''}.
/// (Numbers go to Redis as strings formatted `%.0f`: Lua's own formatting of a double
/// loses digits past 14, and a seq may have 16.)
pub(super) const PUSH: &str = r"
local function str(n) return string.format('%.0f', n) end
local src = ARGV[1]
local nxt = -1
-- A complete log: its state expires (a state nobody appended to yet does too, but has
-- no line).
local ttl = redis.call('PTTL', KEYS[1])
local complete = ttl > 0 and tonumber(redis.call('HGET', KEYS[1], 'next') or '0') > 0
if src ~= '' then
  local seq = tonumber(ARGV[2])
  local known = redis.call('HGET', KEYS[2], 's:' .. src)
  if not known then
    local count = tonumber(redis.call('HGET', KEYS[2], 'sources') or '0')
    if count >= tonumber(ARGV[5]) then return {'many', ARGV[5], ''} end
  end
  nxt = tonumber(known or '0')
  local applied = tonumber(redis.call('HGET', KEYS[2], 'a:' .. src) or '0')
  if applied > nxt then nxt = applied end
  if seq < nxt or redis.call('HEXISTS', KEYS[2], 'q:' .. src .. ':' .. ARGV[2]) == 1 then
    return {'dup', str(nxt), ''}
  end
  if complete then return {'late', str(nxt), ''} end
  local fin = redis.call('HGET', KEYS[2], 'f:' .. src)
  local max = tonumber(redis.call('HGET', KEYS[2], 'm:' .. src) or '-1')
  if fin then
    if seq > tonumber(fin) or ARGV[3] == '1' then return {'final', ARGV[2], fin} end
  elseif ARGV[3] == '1' and max > seq then
    return {'final', str(max), ARGV[2]}
  end
  if not known then redis.call('HINCRBY', KEYS[2], 'sources', 1) end
  if ARGV[3] == '1' then redis.call('HSET', KEYS[2], 'f:' .. src, ARGV[2]) end
  if seq > max then redis.call('HSET', KEYS[2], 'm:' .. src, ARGV[2]) end
  if seq == nxt then
    nxt = nxt + 1
    while redis.call('HDEL', KEYS[2], 'q:' .. src .. ':' .. str(nxt)) == 1 do nxt = nxt + 1 end
  else
    redis.call('HSET', KEYS[2], 'q:' .. src .. ':' .. ARGV[2], 1)
  end
  redis.call('HSET', KEYS[2], 's:' .. src, str(nxt))
elseif complete then
  return {'late', '-1', ''}
end
redis.call('XADD', KEYS[3], '*', 'b', ARGV[4], 't', ARGV[9])
-- Expire with the instance's other keys: with its state, or soon while there is none.
if ttl == -2 then ttl = tonumber(ARGV[6]) end
for i = 2, 3 do
  if ttl == -1 then redis.call('PERSIST', KEYS[i]) else redis.call('PEXPIRE', KEYS[i], ttl) end
end
redis.call('PUBLISH', ARGV[7], ARGV[8] .. ' push')
return {'ok', str(nxt), ''}
";

//! Instance ids, as PowerJob's `SnowFlakeIdGenerator` makes them: the creation time in
//! ms since 2019-04-21 in the high bits, the server's data centre and machine ids, then
//! a sequence within the millisecond. So ids grow with time, exceed 2^53 like every real
//! one, and two servers (or two runs of `powertail demo`) never hand out the same ones.

use super::SimCore;
use crate::types::InstanceIds;

/// The fixtures' instance id (a [`InstanceIds::Sequential`] start that matches them): the snowflake id of
/// 2024-06-01T08:00:00Z on machine 1.
pub const FIRST_INSTANCE_ID: i64 = 677_182_124_851_200_064;
/// `SnowFlakeIdGenerator.START_STAMP` (2019-04-21T16:00:00Z).
pub const SNOWFLAKE_EPOCH_MS: i64 = 1_555_776_000_000;
/// Bits below the timestamp: 2 data centre, 14 machine, 6 sequence.
const TIMESTAMP_SHIFT: u32 = 22;
/// Bits of the sequence within one millisecond.
const SEQUENCE_BITS: u32 = 6;
/// The largest timestamp that keeps an id positive.
const MAX_TIMESTAMP: i64 = (1 << (63 - TIMESTAMP_SHIFT)) - 1;

/// The snowflake id after `last` for a creation at `now` (epoch ms): the time's, or,
/// when the clock has not moved past `last`, the next sequence number (the next
/// millisecond once the sequence is used up), so ids strictly increase.
pub fn next_snowflake(last: Option<i64>, now: i64, machine: u16) -> i64 {
    let sequence_max = (1 << SEQUENCE_BITS) - 1;
    let mut timestamp = now.saturating_sub(SNOWFLAKE_EPOCH_MS).clamp(0, MAX_TIMESTAMP);
    let mut sequence = 0;
    if let Some(last) = last {
        let (last_timestamp, last_sequence) = (last >> TIMESTAMP_SHIFT, last & sequence_max);
        if timestamp <= last_timestamp {
            if last_sequence < sequence_max {
                (timestamp, sequence) = (last_timestamp, last_sequence + 1);
            } else {
                timestamp = last_timestamp.saturating_add(1).min(MAX_TIMESTAMP);
            }
        }
    }
    (timestamp << TIMESTAMP_SHIFT) | (i64::from(machine) << SEQUENCE_BITS) | sequence
}

impl SimCore {
    /// A new instance id, created at `now`.
    pub(super) fn next_instance_id(&mut self, now: i64) -> i64 {
        let id = match self.cfg.instance_ids {
            InstanceIds::Snowflake { machine } => next_snowflake(self.last_id, now, machine),
            InstanceIds::Sequential { first } => {
                self.last_id.map_or(first, |last| last.saturating_add(InstanceIds::SEQUENTIAL_STEP))
            }
        };
        self.last_id = Some(id);
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-06-01T08:00:00Z.
    const T0: i64 = 1_717_228_800_000;

    #[test]
    fn the_fixtures_id_is_the_snowflake_of_its_time_on_machine_1() {
        assert_eq!(next_snowflake(None, T0, 1), FIRST_INSTANCE_ID);
    }

    #[test]
    fn ids_increase_within_a_millisecond_and_when_the_clock_goes_back() {
        let a = next_snowflake(None, T0, 7);
        let b = next_snowflake(Some(a), T0, 7);
        assert_eq!(b, a + 1);
        // The sequence used up: the next millisecond, sequence 0, same machine.
        let full = a | 63;
        let next = next_snowflake(Some(full), T0, 7);
        assert_eq!((next >> TIMESTAMP_SHIFT, next & 63, (next >> 6) & 0xffff), ((T0 - SNOWFLAKE_EPOCH_MS) + 1, 0, 7));
        // A clock that went back still gives a larger id.
        assert!(next_snowflake(Some(next), T0 - 5_000, 7) > next);
        // Later: the time's own id.
        assert_eq!(next_snowflake(Some(b), T0 + 1, 7) >> TIMESTAMP_SHIFT, T0 + 1 - SNOWFLAKE_EPOCH_MS);
    }

    #[test]
    fn extreme_times_keep_ids_positive() {
        assert!(next_snowflake(None, i64::MAX, u16::MAX) > 0);
        assert!(next_snowflake(Some(i64::MAX), i64::MAX, u16::MAX) > 0);
        assert_eq!(next_snowflake(None, i64::MIN, 0), 0);
    }
}

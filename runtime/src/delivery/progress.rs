//! Which records of one partition are finished, and how far the partition
//! may be committed.
//!
//! A record is *finished* once it was delivered, skipped, dropped or
//! dead-lettered: it must never be sent again. The commit mark is the
//! lowest offset read and not finished, or one past the highest offset read
//! when every record read is finished. Committing the mark therefore never
//! passes an unfinished record, whatever order records finish in, and the
//! mark never moves back.
//!
//! In `partition` order records finish in the order they are read, so the
//! mark is simply one past the last finished record; the tracker is written
//! for the general case, where records of a partition finish out of order.

use std::collections::VecDeque;

/// The finished records of one partition and its commit mark.
///
/// Invariants: `pending` holds the offsets read since the last rewind and
/// not yet passed by the mark, in increasing order (Kafka's order within a
/// partition, with gaps where compaction or transaction markers removed
/// offsets), each with whether it finished; its front, if any, is
/// unfinished. The mark is that front's offset, or `read_end` when nothing
/// is pending, so it never decreases except at a rewind. In `partition`
/// order `pending` holds one record at a time and its buffer is reused, so
/// tracking allocates nothing per record.
#[derive(Debug, Default)]
pub(crate) struct PartitionProgress {
    /// Offsets read and not yet behind the mark, with "finished" flags.
    pending: VecDeque<(i64, bool)>,
    /// One past the highest offset read; `None` before the first record.
    read_end: Option<i64>,
}

impl PartitionProgress {
    /// Notes that `offset` was read. An offset below one already read means
    /// the consumer was rewound (librdkafka's `auto.offset.reset` after an
    /// out-of-range fetch): the tracker starts over from it and the mark
    /// moves back with the position librdkafka reads from, as Kafka
    /// Connect's would. Records read before the rewind and still unfinished
    /// are forgotten; they are read again.
    pub(crate) fn read(&mut self, offset: i64) {
        if self.read_end.is_some_and(|end| offset < end) {
            self.pending.clear();
        }
        self.pending.push_back((offset, false));
        self.read_end = Some(offset + 1);
    }

    /// Notes that `offset` finished; returns the new commit mark when this
    /// moved it. An offset not pending (never read, already finished, or
    /// forgotten by a rewind) changes nothing.
    pub(crate) fn finish(&mut self, offset: i64) -> Option<i64> {
        let index = self
            .pending
            .binary_search_by_key(&offset, |&(pending, _)| pending)
            .ok()?;
        let finished = &mut self.pending[index].1;
        if std::mem::replace(finished, true) || index != 0 {
            return None;
        }
        while self.pending.front().is_some_and(|&(_, done)| done) {
            self.pending.pop_front();
        }
        self.mark()
    }

    /// Offsets between the mark and one past the highest offset read: what
    /// a crash now could send again.
    pub(crate) fn uncommitted(&self) -> i64 {
        match (self.mark(), self.read_end) {
            (Some(mark), Some(end)) => end - mark,
            _ => 0,
        }
    }

    /// The offset to commit: every record below it is finished. `None`
    /// before the first record is read.
    pub(crate) fn mark(&self) -> Option<i64> {
        self.pending
            .front()
            .map(|&(offset, _)| offset)
            .or(self.read_end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn in_order_finishes_move_the_mark_one_record_at_a_time() {
        let mut progress = PartitionProgress::default();
        assert_eq!(progress.mark(), None);
        progress.read(7);
        assert_eq!(progress.mark(), Some(7));
        assert_eq!(progress.finish(7), Some(8));
        // A gap in the offsets (compaction) is no unfinished record.
        progress.read(10);
        assert_eq!(progress.mark(), Some(10));
        assert_eq!(progress.finish(10), Some(11));
    }

    #[test]
    fn a_record_finished_early_does_not_move_the_mark_past_an_older_one() {
        let mut progress = PartitionProgress::default();
        for offset in 0..3 {
            progress.read(offset);
        }
        assert_eq!(progress.finish(1), None);
        assert_eq!(progress.finish(2), None);
        assert_eq!(progress.mark(), Some(0));
        assert_eq!(progress.finish(0), Some(3));
    }

    #[test]
    fn a_rewind_starts_over_from_the_rewound_offset() {
        let mut progress = PartitionProgress::default();
        progress.read(10);
        progress.read(11);
        assert_eq!(progress.finish(10), Some(11));
        // The consumer is reset to 4 while 11 is in flight.
        progress.read(4);
        assert_eq!(progress.mark(), Some(4));
        assert_eq!(progress.finish(11), None, "forgotten by the rewind");
        assert_eq!(progress.finish(4), Some(5));
    }

    /// Strictly increasing offsets (gaps allowed) and an order to finish
    /// some of them in.
    fn history() -> impl Strategy<Value = (Vec<i64>, Vec<usize>)> {
        prop::collection::vec(1i64..4, 1..60).prop_flat_map(|steps| {
            let offsets: Vec<i64> = steps
                .iter()
                .scan(-1i64, |at, step| {
                    *at += step;
                    Some(*at)
                })
                .collect();
            let n = offsets.len();
            let order = Just((0..n).collect::<Vec<_>>()).prop_shuffle();
            (Just(offsets), order, 0..=n)
                .prop_map(|(offsets, order, finished)| (offsets, order[..finished].to_vec()))
        })
    }

    proptest! {
        /// Whatever order records finish in, read interleaved with finishes:
        /// the mark is the lowest unfinished offset read (or one past the
        /// last read), never passes an unfinished record, and never moves
        /// back; `finish` reports exactly the moves.
        #[test]
        fn the_mark_is_the_lowest_unfinished_offset_and_never_decreases(
            (offsets, order) in history(),
            reads_ahead in 1usize..8,
        ) {
            let mut progress = PartitionProgress::default();
            let mut finished = vec![false; offsets.len()];
            let mut read = 0;
            let mut last_mark = None;
            for &index in &order {
                // Read at least up to the record about to finish, and some
                // records beyond it.
                let wanted = (index + reads_ahead).min(offsets.len()).max(index + 1);
                while read < wanted {
                    progress.read(offsets[read]);
                    read += 1;
                }
                let before = progress.mark();
                let moved = progress.finish(offsets[index]);
                finished[index] = true;
                let mark = progress.mark();
                let expected = (0..read)
                    .find(|&i| !finished[i])
                    .map(|i| offsets[i])
                    .unwrap_or(offsets[read - 1] + 1);
                prop_assert_eq!(mark, Some(expected));
                prop_assert!(mark >= last_mark);
                prop_assert_eq!(moved, (mark != before).then_some(expected));
                last_mark = mark;
            }
        }
    }
}

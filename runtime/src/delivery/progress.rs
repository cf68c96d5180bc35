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

/// What the lane keeps of a record it read, to say later that it finished.
///
/// An offset alone is not enough: after a rewind the same offset is read
/// again, and the finish of the copy read before the rewind must not
/// count for the copy read after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket {
    offset: i64,
    epoch: u32,
}

/// One record read and not yet behind the mark.
#[derive(Debug)]
struct Entry {
    offset: i64,
    /// The rewinds before it was read (wrapping: a finish would have to
    /// wait 2^32 rewinds to be mistaken for a later copy's).
    epoch: u32,
    finished: bool,
}

/// The finished records of one partition and its commit mark.
///
/// Invariants: `pending` holds the records read and not yet passed by the
/// mark, in increasing offset order (Kafka's order within a partition,
/// with gaps where compaction or transaction markers removed offsets),
/// each with whether it finished; its front, if any, is unfinished. The
/// mark is that front's offset, or `read_end` when nothing is pending, so
/// it never decreases except at a rewind. In `partition` order `pending`
/// holds one record at a time and its buffer is reused, so tracking
/// allocates nothing per record.
#[derive(Debug, Default)]
pub(crate) struct PartitionProgress {
    /// Records read and not yet behind the mark.
    pending: VecDeque<Entry>,
    /// One past the highest offset read; `None` before the first record.
    read_end: Option<i64>,
    /// Rewinds so far.
    epoch: u32,
}

impl PartitionProgress {
    /// Notes that `offset` was read; the ticket says when it finished.
    ///
    /// An offset below one already read means the consumer was rewound
    /// (librdkafka's `auto.offset.reset` after an out-of-range fetch):
    /// records at or above it are forgotten, as they are read again, and
    /// finishing their earlier copies changes nothing. Unfinished records
    /// below it are kept, so the mark moves back to the rewound offset or
    /// to the lowest of them, never past a record still in delivery.
    pub(crate) fn read(&mut self, offset: i64) -> Ticket {
        if self.read_end.is_some_and(|end| offset < end) {
            while self
                .pending
                .back()
                .is_some_and(|entry| entry.offset >= offset)
            {
                self.pending.pop_back();
            }
            self.epoch = self.epoch.wrapping_add(1);
        }
        self.pending.push_back(Entry {
            offset,
            epoch: self.epoch,
            finished: false,
        });
        self.read_end = Some(offset + 1);
        Ticket {
            offset,
            epoch: self.epoch,
        }
    }

    /// Notes that the record of `ticket` finished; returns the new commit
    /// mark when this moved it. A record not pending (already finished, or
    /// forgotten by a rewind) changes nothing.
    pub(crate) fn finish(&mut self, ticket: Ticket) -> Option<i64> {
        let index = self
            .pending
            .binary_search_by_key(&ticket.offset, |entry| entry.offset)
            .ok()?;
        let entry = &mut self.pending[index];
        if entry.epoch != ticket.epoch || std::mem::replace(&mut entry.finished, true) || index != 0
        {
            return None;
        }
        while self.pending.front().is_some_and(|entry| entry.finished) {
            self.pending.pop_front();
        }
        self.mark()
    }

    /// Records read and not yet behind the mark: what a crash now would
    /// send again.
    pub(crate) fn held(&self) -> usize {
        self.pending.len()
    }

    /// Offsets between the mark and one past the highest offset read.
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
            .map(|entry| entry.offset)
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
        let seven = progress.read(7);
        assert_eq!(progress.mark(), Some(7));
        assert_eq!(progress.finish(seven), Some(8));
        // A gap in the offsets (compaction) is no unfinished record.
        let ten = progress.read(10);
        assert_eq!(progress.mark(), Some(10));
        assert_eq!(progress.finish(ten), Some(11));
        assert_eq!(progress.held(), 0);
    }

    #[test]
    fn a_record_finished_early_does_not_move_the_mark_past_an_older_one() {
        let mut progress = PartitionProgress::default();
        let tickets: Vec<Ticket> = (0..3).map(|offset| progress.read(offset)).collect();
        assert_eq!(progress.finish(tickets[1]), None);
        assert_eq!(progress.finish(tickets[2]), None);
        assert_eq!(progress.mark(), Some(0));
        // Finished records above the mark are still held: a crash re-sends them.
        assert_eq!(progress.held(), 3);
        assert_eq!(progress.finish(tickets[0]), Some(3));
        assert_eq!(progress.held(), 0);
    }

    #[test]
    fn a_rewind_starts_over_from_the_rewound_offset() {
        let mut progress = PartitionProgress::default();
        let ten = progress.read(10);
        let eleven = progress.read(11);
        assert_eq!(progress.finish(ten), Some(11));
        // The consumer is reset to 4 while 11 is in flight.
        let four = progress.read(4);
        assert_eq!(progress.mark(), Some(4));
        assert_eq!(progress.finish(eleven), None, "forgotten by the rewind");
        assert_eq!(progress.finish(four), Some(5));
    }

    #[test]
    fn a_rewind_keeps_unfinished_records_below_it_and_ignores_earlier_copies() {
        let mut progress = PartitionProgress::default();
        let tickets: Vec<Ticket> = (0..100).map(|offset| progress.read(offset)).collect();
        for &ticket in &tickets[6..] {
            progress.finish(ticket);
        }
        assert_eq!(progress.mark(), Some(0));
        for &ticket in &tickets[..5] {
            progress.finish(ticket);
        }
        assert_eq!(progress.mark(), Some(5), "5 is in back-off");
        // The log was truncated and the consumer reset to 80 (`latest`).
        let again = progress.read(80);
        assert_eq!(progress.mark(), Some(5), "a rewind never passes 5");
        // 60's copy from before the rewind finishes: the mark stays.
        assert_eq!(progress.finish(tickets[60]), None);
        assert_eq!(
            progress.finish(tickets[80]),
            None,
            "the copy read again is unfinished"
        );
        assert_eq!(progress.finish(tickets[5]), Some(80));
        assert_eq!(progress.finish(again), Some(81));
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

    /// One step of a lane's life, for the tracker.
    #[derive(Debug, Clone)]
    enum Step {
        /// Read the next record, this far past the last one.
        Read(i64),
        /// The consumer is reset this far back, and reads from there.
        Rewind(i64),
        /// One of the records in delivery (picked by the index) finishes.
        Finish(prop::sample::Index),
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        prop::collection::vec(
            prop_oneof![
                4 => (1i64..4).prop_map(Step::Read),
                1 => (1i64..12).prop_map(Step::Rewind),
                4 => any::<prop::sample::Index>().prop_map(Step::Finish),
            ],
            1..150,
        )
    }

    /// A record as the model sees it.
    struct Read {
        ticket: Ticket,
        offset: i64,
        /// Read again since (a rewind at or below it).
        superseded: bool,
        finished: bool,
    }

    proptest! {
        /// Whatever order records finish in, read interleaved with finishes:
        /// the mark is the lowest unfinished offset read (or one past the
        /// last read), never passes an unfinished record, and never moves
        /// back; `finish` reports exactly the moves, and `held` counts the
        /// records from the mark on.
        #[test]
        fn the_mark_is_the_lowest_unfinished_offset_and_never_decreases(
            (offsets, order) in history(),
            reads_ahead in 1usize..8,
        ) {
            let mut progress = PartitionProgress::default();
            let mut tickets = Vec::new();
            let mut finished = vec![false; offsets.len()];
            let mut last_mark = None;
            for &index in &order {
                // Read at least up to the record about to finish, and some
                // records beyond it.
                let wanted = (index + reads_ahead).min(offsets.len()).max(index + 1);
                while tickets.len() < wanted {
                    tickets.push(progress.read(offsets[tickets.len()]));
                }
                let read = tickets.len();
                let before = progress.mark();
                let moved = progress.finish(tickets[index]);
                finished[index] = true;
                let mark = progress.mark();
                let lowest = (0..read).find(|&i| !finished[i]);
                let expected = lowest.map_or(offsets[read - 1] + 1, |i| offsets[i]);
                prop_assert_eq!(mark, Some(expected));
                prop_assert!(mark >= last_mark);
                prop_assert_eq!(moved, (mark != before).then_some(expected));
                prop_assert_eq!(progress.held(), lowest.map_or(0, |i| read - i));
                last_mark = mark;
            }
        }

        /// With rewinds among the reads, and records read before a rewind
        /// finishing after it: the mark is the lowest offset of a record in
        /// delivery that will not be read again (or one past the last
        /// read), so it never passes one; a finish of a copy read again
        /// changes nothing; and between rewinds the mark never moves back.
        #[test]
        fn rewinds_never_let_the_mark_pass_a_record_in_delivery(steps in steps()) {
            let mut progress = PartitionProgress::default();
            let mut reads: Vec<Read> = Vec::new();
            let mut read_end: Option<i64> = None;
            let mut last_mark = None;
            for step in steps {
                let before = progress.mark();
                let mut moved = None;
                // The offset read next, if this step reads one.
                let read_at = match step {
                    Step::Read(gap) => Some(read_end.map_or(gap, |end| end - 1 + gap)),
                    Step::Rewind(back) => {
                        let offset = read_end.map_or(back, |end| (end - back).max(0));
                        for read in &mut reads {
                            read.superseded |= read.offset >= offset;
                        }
                        last_mark = None;
                        Some(offset)
                    }
                    Step::Finish(pick) => {
                        let unfinished: Vec<usize> =
                            (0..reads.len()).filter(|&i| !reads[i].finished).collect();
                        if unfinished.is_empty() {
                            continue;
                        }
                        let read = &mut reads[unfinished[pick.index(unfinished.len())]];
                        read.finished = true;
                        moved = Some((progress.finish(read.ticket), read.superseded));
                        None
                    }
                };
                if let Some(offset) = read_at {
                    let ticket = progress.read(offset);
                    reads.push(Read { ticket, offset, superseded: false, finished: false });
                    read_end = Some(offset + 1);
                }
                let mark = progress.mark();
                let expected = reads
                    .iter()
                    .filter(|read| !read.finished && !read.superseded)
                    .map(|read| read.offset)
                    .min()
                    .or(read_end);
                prop_assert_eq!(mark, expected);
                prop_assert!(last_mark.is_none() || mark >= last_mark);
                if let Some((moved, superseded)) = moved {
                    prop_assert_eq!(moved, (mark != before).then_some(mark.unwrap()));
                    prop_assert!(!superseded || moved.is_none(), "an earlier copy moved the mark");
                }
                last_mark = mark;
            }
        }
    }
}

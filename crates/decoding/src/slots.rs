//! The model state's rows as the search sees them, and when to compact them.
//!
//! Removing a finished row from the model state copies every cached tensor of every row (a
//! gather). Doing that whenever a row finishes makes a batch of B rows pay ~B copies of the whole
//! cache — throughput then falls as the batch grows. Greedy search therefore leaves a finished
//! row in place, *dead* (it is stepped on a filler token and its output ignored), and compacts
//! once the row-steps spent on dead rows since the last compaction would exceed the rows in the
//! state: a gather costs about one step of the whole batch, so waste and copies stay balanced
//! (the ski-rental rule; CTranslate2 also gathers lazily). A dead row is also compacted away
//! before its position passes the furthest one a live row may reach, so it never asks the model
//! for a position no live row could use.

/// A state row: a live partial hypothesis, or a dead one at its next decoder position.
#[derive(Debug, Clone)]
enum Slot<R> {
    Live(R),
    Dead { position: usize },
}

#[derive(Debug, Clone)]
pub(crate) struct Slots<R> {
    slots: Vec<Slot<R>>,
    /// Dead row-steps since the last compaction.
    wasted: usize,
}

impl<R> Default for Slots<R> {
    fn default() -> Self {
        Self { slots: Vec::new(), wasted: 0 }
    }
}

impl<R> Slots<R> {
    /// Rows in the model state, dead ones included.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn live(&self) -> usize {
        self.live_rows().count()
    }

    pub(crate) fn is_compact(&self) -> bool {
        self.slots.iter().all(|slot| matches!(slot, Slot::Live(_)))
    }

    pub(crate) fn push(&mut self, row: R) {
        self.slots.push(Slot::Live(row));
    }

    pub(crate) fn live_rows(&self) -> impl Iterator<Item = &R> {
        self.slots.iter().filter_map(|slot| match slot {
            Slot::Live(row) => Some(row),
            Slot::Dead { .. } => None,
        })
    }

    /// One value per state row: `live(row)`, or `filler` for a dead row.
    pub(crate) fn per_row<T: Copy>(&self, live: impl Fn(&R) -> T, filler: T) -> Vec<T> {
        self.slots.iter().map(|slot| if let Slot::Live(row) = slot { live(row) } else { filler }).collect()
    }

    /// Takes every row out (the state is compact: beam search reorders rows at every step).
    pub(crate) fn take_compact(&mut self) -> Vec<R> {
        assert!(self.is_compact(), "beam search keeps no dead rows");
        self.wasted = 0;
        std::mem::take(&mut self.slots)
            .into_iter()
            .filter_map(|slot| if let Slot::Live(row) = slot { Some(row) } else { None })
            .collect()
    }

    /// Replaces every row with `rows`, all live (after the model state was reordered to match).
    pub(crate) fn replace(&mut self, rows: Vec<R>) {
        self.slots = rows.into_iter().map(Slot::Live).collect();
        self.wasted = 0;
    }

    /// Visits every live row with its state index; `visit` returns `Some(position)` to mark the
    /// row dead at that next position.
    pub(crate) fn retire(&mut self, mut visit: impl FnMut(usize, &mut R) -> Option<usize>) {
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if let Slot::Live(row) = slot
                && let Some(position) = visit(index, row)
            {
                *slot = Slot::Dead { position };
            }
        }
    }

    /// Records a step taken by every row: dead rows move on and count as waste.
    pub(crate) fn stepped_dead(&mut self) {
        for slot in &mut self.slots {
            if let Slot::Dead { position } = slot {
                *position += 1;
                self.wasted += 1;
            }
        }
    }

    /// Whether to compact before the next step: no live row (drop everything), the next step's
    /// dead rows would tip the waste over the state's rows, or a dead row would step to
    /// `position_limit` (one past the furthest position a live row may use) or beyond.
    pub(crate) fn should_compact(&self, position_limit: usize) -> bool {
        let dead: Vec<usize> = self
            .slots
            .iter()
            .filter_map(|slot| if let Slot::Dead { position } = slot { Some(*position) } else { None })
            .collect();
        !dead.is_empty()
            && (dead.len() == self.slots.len()
                || self.wasted + dead.len() > self.slots.len()
                || dead.iter().any(|&p| p >= position_limit))
    }

    /// Drops the dead rows; returns the state indices of the rows kept, in their new order. Live
    /// rows at the end fill the holes in front and the others stay where they are, so every row
    /// kept moves to an index no larger than its own and most do not move: a backend compacts its
    /// caches in place, copying only the rows that fill holes.
    pub(crate) fn compact(&mut self) -> Vec<usize> {
        let is_live = |slot: &Slot<R>| matches!(slot, Slot::Live(_));
        let live = self.slots.iter().filter(|slot| is_live(slot)).count();
        let mut tail = (live..self.slots.len()).filter(|&i| is_live(&self.slots[i]));
        let keep: Vec<usize> = (0..live)
            .map(|i| if is_live(&self.slots[i]) { i } else { tail.next().expect("as many live rows behind as holes") })
            .collect();
        let mut slots: Vec<Option<Slot<R>>> = std::mem::take(&mut self.slots).into_iter().map(Some).collect();
        self.slots = keep.iter().map(|&i| slots[i].take().expect("each row kept once")).collect();
        self.wasted = 0;
        keep
    }

    /// Marks dead every live row `leaving` picks, at the position `position` gives it.
    pub(crate) fn kill_where(&mut self, leaving: impl Fn(&R) -> bool, position: impl Fn(&R) -> usize) {
        self.retire(|_, row| leaving(row).then(|| position(row)));
    }
}

#[cfg(test)]
mod tests;

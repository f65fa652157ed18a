//! One row-state mechanism for every step model (after CTranslate2's `DecoderState`): a model
//! declares each cached tensor once, with the axis that grows as rows come and go, and
//! [`RowState::select`] / [`RowState::append`] keep every tensor aligned with the rows. The
//! operations exist once per tensor library ([`RowTensor`] for tch and for ndarray, behind the
//! `tch` and `ndarray` features), not once per model.
//!
//! Conventions: rows are axis 0 of every tensor. The source mask `[rows, src_len]` says which
//! source columns a row attends to, the steps mask `[rows, steps]` which cached decoder steps
//! are its own (rows that joined later have padding in front). Columns no row uses are dropped
//! when rows leave, since under continuous batching they would otherwise only grow; masked
//! columns contribute zeros, so only the summation order of what remains can change.

use std::ops::Range;

#[cfg(feature = "ndarray")]
mod arrays;
#[cfg(feature = "ndarray")]
mod growing;
#[cfg(feature = "ndarray")]
pub use growing::GrowingArray;
#[cfg(feature = "tch")]
mod tensors;

/// Which axis of a cached tensor, besides rows, depends on what the batch holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Columns {
    /// Rows only (a recurrent hidden state).
    Fixed,
    /// This axis runs over source positions (encoder outputs, cross-attention keys/values).
    Source(usize),
    /// This axis runs over decoded steps (self-attention keys/values).
    Steps(usize),
}

/// What the mechanism needs of a tensor library. Operations that would change nothing (a full
/// range, a width already reached) return the tensor as it is.
pub trait RowTensor: Sized {
    type Error;
    /// Rows to keep, prepared once per `select` and used for every tensor.
    type Rows;

    fn row_index(&self, rows: &[usize]) -> Result<Self::Rows, Self::Error>;
    /// The rows listed, in that order (repeats allowed). Takes the tensor, so that an
    /// implementation may reuse its memory.
    fn select_rows(self, rows: &Self::Rows) -> Result<Self, Self::Error>;
    fn width(&self, axis: usize) -> usize;
    /// Columns `range` of `axis`, contiguous.
    fn narrow(self, axis: usize, range: Range<usize>) -> Result<Self, Self::Error>;
    /// `axis` padded to `width` with zeros (`false` for masks).
    fn pad(self, axis: usize, width: usize) -> Result<Self, Self::Error>;
    /// `self`'s rows, then `below`'s.
    fn stack_rows(self, below: Self) -> Result<Self, Self::Error>;
    /// A cheap value to leave in a slot while its tensor is rebuilt from the old value.
    fn placeholder() -> Self;
}

/// A boolean `[rows, columns]` mask.
pub trait RowMask: RowTensor {
    /// From the first column any row uses to one past the last; empty (at the width) if none.
    fn used_columns(&self) -> Result<Range<usize>, Self::Error>;
}

/// Decoding state of a batch of rows: the masks, each row's decoder position, and the model's
/// cached tensors (`T`) in the order the model declared them.
#[derive(Debug)]
pub struct RowState<T, M> {
    source_mask: M,
    steps_mask: M,
    positions: Vec<i64>,
    tensors: Vec<(Columns, T)>,
}

impl<T, M> RowState<T, M>
where
    T: RowTensor,
    M: RowMask<Error = T::Error, Rows = T::Rows>,
{
    /// A state with no decoded steps yet (`steps_mask` has zero columns) and the model's cached
    /// tensors, each declared with its growing axis; every tensor has the masks' rows.
    pub fn new(source_mask: M, steps_mask: M, rows: usize, tensors: Vec<(Columns, T)>) -> Self {
        Self { source_mask, steps_mask, positions: vec![0; rows], tensors }
    }

    pub fn rows(&self) -> usize {
        self.positions.len()
    }

    pub fn source_mask(&self) -> &M {
        &self.source_mask
    }

    pub fn steps_mask(&self) -> &M {
        &self.steps_mask
    }

    /// Each row's next decoder position (steps it has taken).
    pub fn positions(&self) -> &[i64] {
        &self.positions
    }

    /// Every cached tensor with its growing axis, in declaration order.
    pub fn tensors(&self) -> impl Iterator<Item = (Columns, &T)> {
        self.tensors.iter().map(|(columns, tensor)| (*columns, tensor))
    }

    /// Every cached tensor with its growing axis, mutably (for a model that writes several of
    /// them in one step), in declaration order.
    pub fn tensors_mut(&mut self) -> impl Iterator<Item = (Columns, &mut T)> {
        self.tensors.iter_mut().map(|(columns, tensor)| (*columns, tensor))
    }

    /// Tensor `i`, in declaration order.
    pub fn tensor(&self, i: usize) -> &T {
        &self.tensors[i].1
    }

    pub fn tensor_mut(&mut self, i: usize) -> &mut T {
        &mut self.tensors[i].1
    }

    /// Records one decoded step: the model's new steps mask (one more column, the step's own)
    /// and every row's position moves on.
    pub fn advance(&mut self, steps_mask: M) {
        self.steps_mask = steps_mask;
        self.positions.iter_mut().for_each(|p| *p += 1);
    }

    /// Keeps the rows listed, in that order, then drops the columns no remaining row uses.
    pub fn select(&mut self, rows: &[usize]) -> Result<(), T::Error> {
        let index = self.source_mask.row_index(rows)?;
        self.source_mask = take(&mut self.source_mask).select_rows(&index)?;
        self.steps_mask = take(&mut self.steps_mask).select_rows(&index)?;
        self.positions = rows.iter().map(|&r| self.positions[r]).collect();
        for (_, tensor) in &mut self.tensors {
            *tensor = take(tensor).select_rows(&index)?;
        }
        // Sources are left-aligned, so only trailing source columns can be unused.
        let source = 0..self.source_mask.used_columns()?.end;
        let steps = self.steps_mask.used_columns()?;
        self.source_mask = take(&mut self.source_mask).narrow(1, source.clone())?;
        self.steps_mask = take(&mut self.steps_mask).narrow(1, steps.clone())?;
        for (columns, tensor) in &mut self.tensors {
            let (axis, range) = match *columns {
                Columns::Fixed => continue,
                Columns::Source(axis) => (axis, &source),
                Columns::Steps(axis) => (axis, &steps),
            };
            *tensor = take(tensor).narrow(axis, range.clone())?;
        }
        Ok(())
    }

    /// Appends `other`'s rows after these; both are padded to the wider source and the longer
    /// steps first (padding is masked out).
    pub fn append(&mut self, other: Self) -> Result<(), T::Error> {
        let source = self.source_mask.width(1).max(other.source_mask.width(1));
        let steps = self.steps_mask.width(1).max(other.steps_mask.width(1));
        let width = |columns: Columns| match columns {
            Columns::Fixed => None,
            Columns::Source(axis) => Some((axis, source)),
            Columns::Steps(axis) => Some((axis, steps)),
        };
        let join = |mine: T, theirs: T, columns: Columns| -> Result<T, T::Error> {
            match width(columns) {
                None => mine.stack_rows(theirs),
                Some((axis, width)) => mine.pad(axis, width)?.stack_rows(theirs.pad(axis, width)?),
            }
        };
        self.source_mask = take(&mut self.source_mask).pad(1, source)?.stack_rows(other.source_mask.pad(1, source)?)?;
        self.steps_mask = take(&mut self.steps_mask).pad(1, steps)?.stack_rows(other.steps_mask.pad(1, steps)?)?;
        self.positions.extend(other.positions);
        for ((columns, mine), (_, theirs)) in self.tensors.iter_mut().zip(other.tensors) {
            *mine = join(take(mine), theirs, *columns)?;
        }
        Ok(())
    }
}

/// Moves a tensor out, leaving a placeholder that is overwritten at once.
fn take<T: RowTensor>(slot: &mut T) -> T {
    std::mem::replace(slot, T::placeholder())
}

#[cfg(all(test, feature = "ndarray"))]
mod tests;

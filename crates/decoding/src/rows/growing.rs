//! [`GrowingArray`]: a host array with spare room along one axis, so that a decoder step appends
//! its keys/values by writing one column in place instead of copying the whole cache (the way
//! CTranslate2 and ONNX Runtime's own decoders keep a KV cache with a capacity).
//!
//! The model reads the whole allocation, room included; a step model pads its masks to the
//! allocation's width with `false`. Columns past [`GrowingArray::columns`] hold zeros or values
//! left by rows that have gone: always finite, so the zero weight of a masked column keeps them
//! out of every sum exactly.

use std::{convert::Infallible, ops::Range};

use ndarray::{ArrayD, ArrayViewD, Axis, Slice, concatenate};

use super::RowTensor;

/// Room for this many steps is made at once when an empty cache first grows.
const FIRST_ROOM: usize = 16;

/// An array whose columns along `axis` are in use up to [`GrowingArray::columns`] and allocated
/// up to [`GrowingArray::capacity`]. Always row-major (ONNX Runtime reads it as a slice).
#[derive(Debug, Clone)]
pub struct GrowingArray<A> {
    data: ArrayD<A>,
    axis: usize,
    columns: usize,
}

impl<A: Clone + Default> GrowingArray<A> {
    /// An array whose columns along `axis` are all in use.
    pub fn new(data: ArrayD<A>, axis: usize) -> Self {
        let data = if data.is_standard_layout() { data } else { data.as_standard_layout().into_owned() };
        let columns = data.len_of(Axis(axis));
        Self { data, axis, columns }
    }

    /// `data` with room for `room` columns in all (at least its own).
    pub fn with_room(data: ArrayD<A>, axis: usize, room: usize) -> Self {
        let mut array = Self::new(data, axis);
        array.grow_to(room);
        array
    }

    /// Columns in use along the growing axis.
    pub fn columns(&self) -> usize {
        self.columns
    }

    /// Columns allocated along the growing axis.
    pub fn capacity(&self) -> usize {
        self.data.len_of(Axis(self.axis))
    }

    /// The whole allocation, room included: what the model reads.
    pub fn allocation(&self) -> &ArrayD<A> {
        &self.data
    }

    /// The columns in use.
    pub fn used(&self) -> ArrayViewD<'_, A> {
        self.data.slice_axis(Axis(self.axis), Slice::from(0..self.columns))
    }

    /// Appends `column` (one column along the growing axis, the other axes as this array's),
    /// doubling the room when it is full.
    ///
    /// # Panics
    /// When `column`'s shape does not fit.
    pub fn push(&mut self, column: ArrayViewD<'_, A>) {
        self.reserve(self.columns + 1);
        let at = self.columns;
        self.data.slice_axis_mut(Axis(self.axis), Slice::from(at..at + 1)).assign(&column);
        self.columns += 1;
    }

    /// Makes room for `columns` columns in all: at least double the room, so appending one
    /// column at a time copies the cache O(log steps) times.
    fn reserve(&mut self, columns: usize) {
        let capacity = self.capacity();
        if columns > capacity {
            self.grow_to(columns.max(2 * capacity).max(FIRST_ROOM));
        }
    }

    /// Makes room for exactly `room` columns, if it has less.
    fn grow_to(&mut self, room: usize) {
        if room <= self.capacity() {
            return;
        }
        let mut shape = self.data.shape().to_vec();
        shape[self.axis] = room;
        let mut data = ArrayD::from_elem(shape, A::default());
        data.slice_axis_mut(Axis(self.axis), Slice::from(0..self.columns)).assign(&self.used());
        self.data = data;
    }
}

impl<A: Clone + Default> RowTensor for GrowingArray<A> {
    type Error = Infallible;
    type Rows = Vec<usize>;

    fn row_index(&self, rows: &[usize]) -> Result<Vec<usize>, Infallible> {
        Ok(rows.to_vec())
    }

    /// Room included: the rows keep growing in place.
    fn select_rows(&self, rows: &Vec<usize>) -> Result<Self, Infallible> {
        Ok(Self::new(self.data.select(Axis(0), rows), self.axis).with_columns(self.columns))
    }

    fn width(&self, axis: usize) -> usize {
        if axis == self.axis { self.columns } else { self.data.len_of(Axis(axis)) }
    }

    /// Dropping trailing columns only forgets them; dropping leading ones moves the rest down.
    fn narrow(self, axis: usize, range: Range<usize>) -> Result<Self, Infallible> {
        assert!(axis == self.axis, "a GrowingArray narrows along its growing axis only");
        if range.start == 0 {
            return Ok(self.with_columns(range.end));
        }
        let capacity = self.capacity();
        let kept = self.data.slice_axis(Axis(axis), Slice::from(range)).to_owned();
        Ok(Self::with_room(kept, axis, capacity))
    }

    /// Zero columns appended in place while there is room (else room for exactly `width`).
    fn pad(mut self, axis: usize, width: usize) -> Result<Self, Infallible> {
        assert!(axis == self.axis, "a GrowingArray pads along its growing axis only");
        if width <= self.columns {
            return Ok(self);
        }
        self.grow_to(width);
        self.data.slice_axis_mut(Axis(axis), Slice::from(self.columns..width)).fill(A::default());
        Ok(self.with_columns(width))
    }

    /// Both have the same columns in use; the result has the larger room.
    fn stack_rows(mut self, mut below: Self) -> Result<Self, Infallible> {
        assert_eq!(self.columns, below.columns, "rows are stacked at the same width");
        let capacity = self.capacity().max(below.capacity());
        self.grow_to(capacity);
        below.grow_to(capacity);
        let joined = concatenate(Axis(0), &[self.data.view(), below.data.view()]).expect("same shapes but rows");
        Ok(Self::new(joined, self.axis).with_columns(self.columns))
    }

    fn placeholder() -> Self {
        Self { data: ArrayD::from_elem(vec![0], A::default()), axis: 0, columns: 0 }
    }
}

impl<A> GrowingArray<A> {
    fn with_columns(mut self, columns: usize) -> Self {
        debug_assert!(columns <= self.data.len_of(Axis(self.axis)));
        self.columns = columns;
        self
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array, ArrayD, IxDyn};

    use super::*;

    /// [rows, 2, steps] with value 100·row + 10·head + step.
    fn cache(rows: usize, steps: usize) -> ArrayD<f32> {
        Array::from_shape_fn(IxDyn(&[rows, 2, steps]), |i| (100 * i[0] + 10 * i[1] + i[2]) as f32)
    }

    fn step_column(rows: usize, step: usize) -> ArrayD<f32> {
        Array::from_shape_fn(IxDyn(&[rows, 2, 1]), |i| (100 * i[0] + 10 * i[1] + step) as f32)
    }

    #[test]
    fn pushing_writes_in_place_until_the_room_doubles() {
        let mut array = GrowingArray::new(cache(3, 0), 2);
        assert_eq!((array.columns(), array.capacity()), (0, 0));
        for step in 0..FIRST_ROOM + 1 {
            array.push(step_column(3, step).view());
        }
        assert_eq!((array.columns(), array.capacity()), (FIRST_ROOM + 1, 2 * FIRST_ROOM));
        assert_eq!(array.used(), cache(3, FIRST_ROOM + 1).view());
        assert!(array.allocation().is_standard_layout());
        // The room beyond the used columns is zero.
        assert!(array.allocation().slice_axis(Axis(2), Slice::from(FIRST_ROOM + 1..)).iter().all(|&x| x == 0.0));
    }

    #[test]
    fn select_narrow_pad_and_stack_keep_the_used_columns_right() {
        let mut array = GrowingArray::with_room(cache(3, 5), 2, 8);
        assert_eq!((array.columns(), array.capacity()), (5, 8));
        array = array.select_rows(&vec![2, 0, 0]).unwrap();
        assert_eq!(array.used(), cache(3, 5).select(Axis(0), &[2, 0, 0]).view());
        assert_eq!(array.capacity(), 8, "selecting keeps the room");

        let trailing = array.clone().narrow(2, 0..3).unwrap();
        assert_eq!((trailing.width(2), trailing.capacity()), (3, 8), "trailing columns are forgotten, not copied");
        assert_eq!(trailing.used(), array.used().slice_axis(Axis(2), Slice::from(0..3)));

        let leading = array.clone().narrow(2, 2..5).unwrap();
        assert_eq!(leading.used(), array.used().slice_axis(Axis(2), Slice::from(2..5)));
        assert_eq!(leading.capacity(), 8);

        // Padding a narrowed array zeroes what the dropped columns left behind.
        let padded = trailing.pad(2, 6).unwrap();
        assert_eq!(padded.width(2), 6);
        assert!(padded.used().slice_axis(Axis(2), Slice::from(3..6)).iter().all(|&x| x == 0.0));
        assert_eq!(
            padded.used().slice_axis(Axis(2), Slice::from(0..3)),
            array.used().slice_axis(Axis(2), Slice::from(0..3))
        );

        // Stacking gives both the larger room, whichever side has it.
        for room in [6, 7, 13] {
            let other = GrowingArray::with_room(cache(1, 6), 2, room);
            let stacked = padded.clone().stack_rows(other.clone()).unwrap();
            assert_eq!((stacked.width(0), stacked.width(2), stacked.capacity()), (4, 6, room.max(8)));
            assert_eq!(stacked.used().slice_axis(Axis(0), Slice::from(0..3)), padded.used());
            assert_eq!(stacked.used().slice_axis(Axis(0), Slice::from(3..4)), cache(1, 6).view());
            assert!(stacked.allocation().is_standard_layout());
            let below = other.stack_rows(padded.clone()).unwrap();
            assert_eq!(below.capacity(), room.max(8));
        }
    }
}

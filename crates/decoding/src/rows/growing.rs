//! [`GrowingArray`]: a host array with spare room along its rows and one growing axis, so that a
//! decoder step writes its keys/values into the cache in place
//! ([`GrowingArray::writable_allocation`]), rows joining a running batch are written after it,
//! and rows leaving are compacted in place — none of them copies the whole cache (the way
//! CTranslate2 and ONNX Runtime's own decoders keep a KV cache with a capacity).
//!
//! The model reads the first [`GrowingArray::rows`] rows with every allocated column
//! ([`GrowingArray::allocation`]) and must ignore the columns a row does not use: they hold
//! zeros or values left by rows that have gone (always finite). ONNX Runtime's
//! GroupQueryAttention reads only each row's own steps; a step model that masks instead pads its
//! masks to the allocated width with `false`.

use std::{convert::Infallible, ops::Range};

use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD, Axis, Slice};

use super::RowTensor;

/// Room for this many columns (or rows) is made at once when an empty array first grows.
const FIRST_ROOM: usize = 16;

/// An array of `rows` rows (axis 0) whose columns along `axis` are in use up to
/// [`GrowingArray::columns`], with room allocated beyond both. Always row-major: the rows in use
/// are a contiguous prefix (ONNX Runtime reads them as a slice).
#[derive(Debug, Clone)]
pub struct GrowingArray<A> {
    data: ArrayD<A>,
    axis: usize,
    rows: usize,
    columns: usize,
    exact: bool,
}

impl<A: Copy + Default> GrowingArray<A> {
    /// An array whose rows and columns along `axis` (not 0) are all in use.
    pub fn new(data: ArrayD<A>, axis: usize) -> Self {
        assert!(axis > 0 && axis < data.ndim(), "the growing axis is not the rows' axis");
        let data = if data.is_standard_layout() { data } else { data.as_standard_layout().into_owned() };
        let (rows, columns) = (data.len_of(Axis(0)), data.len_of(Axis(axis)));
        Self { data, axis, rows, columns, exact: false }
    }

    /// An array whose growing axis keeps no room: it is reallocated to exactly the columns in
    /// use whenever they change. For columns that change only when rows come and go (a
    /// source's positions), where every allocated column costs the model work at every step.
    pub fn exact(data: ArrayD<A>, axis: usize) -> Self {
        Self { exact: true, ..Self::new(data, axis) }
    }

    /// `data` with room for `room` columns in all (at least its own).
    pub fn with_room(data: ArrayD<A>, axis: usize, room: usize) -> Self {
        let mut array = Self::new(data, axis);
        array.reallocate(array.row_room(), room.max(array.capacity()));
        array
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns in use along the growing axis.
    pub fn columns(&self) -> usize {
        self.columns
    }

    /// Columns allocated along the growing axis.
    pub fn capacity(&self) -> usize {
        self.data.len_of(Axis(self.axis))
    }

    fn row_room(&self) -> usize {
        self.data.len_of(Axis(0))
    }

    /// The rows in use with every allocated column: what the model reads.
    pub fn allocation(&self) -> ArrayViewD<'_, A> {
        self.data.slice_axis(Axis(0), Slice::from(0..self.rows))
    }

    /// The rows and columns in use.
    pub fn used(&self) -> ArrayViewD<'_, A> {
        let rows = self.data.slice_axis(Axis(0), Slice::from(0..self.rows));
        rows.slice_axis_move(Axis(self.axis), Slice::from(0..self.columns))
    }

    /// The rows in use with every allocated column, for a model to write into in place (ONNX
    /// Runtime's attention writing a decoder step into the cache): room is made first for
    /// `columns` columns in use (the room doubles when short), and those count as used after.
    /// Each row may write a different column (each row keeps its own steps from column 0).
    pub fn writable_allocation(&mut self, columns: usize) -> ArrayViewMutD<'_, A> {
        self.reserve_columns(columns);
        self.columns = self.columns.max(columns);
        self.data.slice_axis_mut(Axis(0), Slice::from(0..self.rows))
    }

    /// Makes room for `columns` columns in all: at least double the room, so appending one
    /// column at a time copies the cache O(log steps) times.
    fn reserve_columns(&mut self, columns: usize) {
        let capacity = self.capacity();
        if columns > capacity {
            let room = if self.exact { columns } else { columns.max(2 * capacity).max(FIRST_ROOM) };
            self.reallocate(self.row_room(), room);
        }
    }

    /// Makes room for `rows` rows in all, doubling.
    fn reserve_rows(&mut self, rows: usize) {
        let room = self.row_room();
        if rows > room {
            self.reallocate(rows.max(2 * room).max(FIRST_ROOM), self.capacity());
        }
    }

    /// A new allocation of `rows` × `columns` holding what is in use, zeros elsewhere.
    fn reallocate(&mut self, rows: usize, columns: usize) {
        let mut shape = self.data.shape().to_vec();
        (shape[0], shape[self.axis]) = (rows, columns);
        let mut data = ArrayD::from_elem(shape, A::default());
        let used = self.used();
        data.slice_axis_mut(Axis(0), Slice::from(0..self.rows))
            .slice_axis_move(Axis(self.axis), Slice::from(0..self.columns))
            .assign(&used);
        self.data = data;
    }

    /// Elements of one row of the allocation.
    fn row_len(&self) -> usize {
        self.data.len() / self.row_room().max(1)
    }
}

impl<A: Copy + Default> RowTensor for GrowingArray<A> {
    type Error = Infallible;
    type Rows = Vec<usize>;

    fn row_index(&self, rows: &[usize]) -> Result<Vec<usize>, Infallible> {
        Ok(rows.to_vec())
    }

    /// When no row moves up (`rows[t] ≥ t`: finished rows leaving, later rows filling their
    /// holes) the rows are moved in place; any other selection (beam search's reordering) is
    /// gathered into a new allocation with the same room.
    fn select_rows(mut self, rows: &Vec<usize>) -> Result<Self, Infallible> {
        self.keep_rows(rows);
        Ok(self)
    }

    fn width(&self, axis: usize) -> usize {
        match axis {
            0 => self.rows,
            a if a == self.axis => self.columns,
            a => self.data.len_of(Axis(a)),
        }
    }

    /// Dropping trailing columns forgets them (the room shrinks when it is over four times what
    /// is used); dropping leading ones moves the rest down.
    fn narrow(mut self, axis: usize, range: Range<usize>) -> Result<Self, Infallible> {
        assert!(axis == self.axis, "a GrowingArray narrows along its growing axis only");
        if range.start > 0 {
            let kept = self.used().slice_axis(Axis(axis), Slice::from(range.clone())).to_owned();
            let capacity = if self.exact { range.len() } else { self.capacity() };
            return Ok(self.holding(kept, self.row_room(), capacity));
        }
        self.columns = range.end;
        if self.exact && self.capacity() > self.columns {
            self.reallocate(self.row_room(), self.columns);
        } else if self.capacity() > 4 * self.columns.max(FIRST_ROOM) {
            self.reallocate(self.row_room(), 2 * self.columns.max(FIRST_ROOM));
        }
        Ok(self)
    }

    /// Zero columns made usable in place while there is room (else the room doubles).
    fn pad(mut self, axis: usize, width: usize) -> Result<Self, Infallible> {
        assert!(axis == self.axis, "a GrowingArray pads along its growing axis only");
        if width <= self.columns {
            return Ok(self);
        }
        self.reserve_columns(width);
        let (rows, from) = (self.rows, self.columns);
        self.data
            .slice_axis_mut(Axis(0), Slice::from(0..rows))
            .slice_axis_move(Axis(axis), Slice::from(from..width))
            .fill(A::default());
        self.columns = width;
        Ok(self)
    }

    /// `below`'s rows are written into this array's room (which doubles when short): the rows
    /// already here are not copied. Both have the same columns in use.
    fn stack_rows(mut self, below: Self) -> Result<Self, Infallible> {
        assert_eq!(self.columns, below.columns, "rows are stacked at the same width");
        let (start, end) = (self.rows, self.rows + below.rows);
        self.reserve_rows(end);
        let columns = self.columns;
        self.data
            .slice_axis_mut(Axis(0), Slice::from(start..end))
            .slice_axis_move(Axis(self.axis), Slice::from(0..columns))
            .assign(&below.used());
        self.rows = end;
        Ok(self)
    }

    fn placeholder() -> Self {
        Self { data: ArrayD::from_elem(vec![0, 0], A::default()), axis: 1, rows: 0, columns: 0, exact: false }
    }
}

impl<A: Copy + Default> GrowingArray<A> {
    /// An array of this kind (axis, exactness) whose rows and columns in use are `used`, in a new
    /// allocation of `rows` × `columns` room.
    fn holding(&self, used: ArrayD<A>, rows: usize, columns: usize) -> Self {
        let mut array = Self { exact: self.exact, ..Self::new(used, self.axis) };
        array.reallocate(rows, columns);
        array
    }

    /// Keeps `rows` (indices into the rows in use), in that order.
    fn keep_rows(&mut self, rows: &[usize]) {
        // Targets are written in increasing order and each reads a row at or after itself, so
        // no row is read after it was overwritten.
        let in_place = rows.iter().enumerate().all(|(to, &from)| from >= to && from < self.rows);
        if !in_place {
            let gathered = self.used().select(Axis(0), rows);
            *self = self.holding(gathered, self.row_room().max(rows.len()), self.capacity());
            return;
        }
        let row_len = self.row_len();
        let flat = self.data.as_slice_mut().expect("standard layout");
        for (to, &from) in rows.iter().enumerate() {
            if to != from {
                flat.copy_within(from * row_len..(from + 1) * row_len, to * row_len);
            }
        }
        self.rows = rows.len();
    }
}

#[cfg(test)]
mod tests;

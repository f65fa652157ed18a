//! [`RowTensor`] for libtorch tensors (masks are `Bool` tensors), on whatever device they live.

use std::ops::Range;

use tch::{Device, TchError, Tensor};

use super::{RowMask, RowTensor};

impl RowTensor for Tensor {
    type Error = TchError;
    type Rows = Tensor;

    fn row_index(&self, rows: &[usize]) -> Result<Tensor, TchError> {
        let rows: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
        Tensor::f_from_slice(&rows)?.f_to_device(self.device())
    }

    fn select_rows(self, rows: &Tensor) -> Result<Self, TchError> {
        self.f_index_select(0, rows)
    }

    fn width(&self, axis: usize) -> usize {
        self.size()[axis] as usize
    }

    fn narrow(self, axis: usize, range: Range<usize>) -> Result<Self, TchError> {
        if range == (0..self.width(axis)) {
            return Ok(self);
        }
        self.f_narrow(axis as i64, range.start as i64, range.len() as i64)?.f_contiguous()
    }

    fn pad(self, axis: usize, width: usize) -> Result<Self, TchError> {
        let current = self.width(axis);
        if current >= width {
            return Ok(self);
        }
        let mut shape = self.size();
        shape[axis] = (width - current) as i64;
        let padding = Tensor::f_zeros(shape.as_slice(), (self.kind(), self.device()))?;
        Tensor::f_cat(&[&self, &padding], axis as i64)
    }

    fn stack_rows(self, below: Self) -> Result<Self, TchError> {
        Tensor::f_cat(&[&self, &below], 0)
    }

    fn placeholder() -> Self {
        Tensor::new()
    }
}

impl RowMask for Tensor {
    fn used_columns(&self) -> Result<Range<usize>, TchError> {
        let width = self.width(1);
        if self.width(0) == 0 || width == 0 {
            return Ok(width..width);
        }
        let used = Vec::<bool>::try_from(self.f_any_dim(0, false)?.f_to_device(Device::Cpu)?)?;
        Ok(match (used.iter().position(|&u| u), used.iter().rposition(|&u| u)) {
            (Some(first), Some(last)) => first..last + 1,
            _ => width..width,
        })
    }
}

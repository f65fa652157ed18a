//! ndarray ⇄ ORT plumbing shared by the step models.

use ndarray::{Array, ArrayD, Axis, Dimension, RemoveAxis, concatenate};
use ort::{
    session::{SessionInputValue, SessionOutputs},
    value::{PrimitiveTensorElementType, TensorRef},
};

use crate::RuntimeError;

pub(crate) fn view<'a, T: PrimitiveTensorElementType + Clone + std::fmt::Debug + 'static, D: Dimension + 'static>(
    array: &'a Array<T, D>,
) -> Result<SessionInputValue<'a>, RuntimeError> {
    // Shape + slice rather than the array itself: ORT's layout check refuses zero-sized arrays
    // (an empty KV cache at the first step), whose strides ndarray leaves at zero.
    let data = array.as_slice().ok_or_else(|| RuntimeError::Bundle("internal: a non-contiguous input".into()))?;
    Ok(TensorRef::from_array_view((array.shape().to_vec(), data))?.into())
}

pub(crate) fn output<T: PrimitiveTensorElementType + Clone + 'static, D: Dimension>(
    outputs: &SessionOutputs<'_>,
    name: &str,
) -> Result<Array<T, D>, RuntimeError> {
    let value = outputs.get(name).ok_or_else(|| RuntimeError::Bundle(format!("graph has no output `{name}`")))?;
    let array: ArrayD<T> = value.try_extract_array::<T>()?.to_owned();
    array.into_dimensionality::<D>().map_err(|e| RuntimeError::Bundle(format!("output `{name}`: {e}")))
}

/// `concatenate`, always in standard (row-major) layout: ndarray may pick column-major when
/// joining along the last axis, and ORT reads inputs as row-major slices.
pub(crate) fn concat<T: Clone, D: Dimension + RemoveAxis>(
    axis: usize,
    arrays: &[ndarray::ArrayView<'_, T, D>],
) -> Array<T, D> {
    let joined = concatenate(Axis(axis), arrays).expect("same shape but the joined axis");
    if joined.is_standard_layout() { joined } else { joined.as_standard_layout().into_owned() }
}

/// Pads axis `axis` of `array` to `size` with `fill`.
pub(crate) fn pad_axis<T: Clone, D: Dimension + RemoveAxis>(
    array: Array<T, D>,
    axis: usize,
    size: usize,
    fill: T,
) -> Array<T, D> {
    let current = array.len_of(Axis(axis));
    if current >= size {
        return array;
    }
    let mut shape = array.raw_dim();
    shape[axis] = size - current;
    let padding = Array::from_elem(shape, fill);
    concat(axis, &[array.view(), padding.view()])
}

/// The columns of `mask` [rows, cols] that some row uses: from the first column any row has
/// `true` in to one past the last. With no `true` at all the range is empty (at `cols`).
pub(crate) fn used_columns(mask: &ndarray::Array2<bool>) -> std::ops::Range<usize> {
    let mut first = mask.ncols();
    let mut end = 0;
    for row in mask.rows() {
        if let Some(f) = row.iter().position(|&m| m) {
            first = first.min(f);
            end = end.max(row.iter().rposition(|&m| m).expect("has a true") + 1);
        }
    }
    if end == 0 { mask.ncols()..mask.ncols() } else { first..end }
}

/// `array` restricted to `range` along `axis`, row-major (a no-op when the range is everything).
pub(crate) fn keep_range<T: Clone, D: Dimension + RemoveAxis>(
    array: Array<T, D>,
    axis: usize,
    range: std::ops::Range<usize>,
) -> Array<T, D> {
    if range.start == 0 && range.end == array.len_of(Axis(axis)) {
        return array;
    }
    array.slice_axis(Axis(axis), ndarray::Slice::from(range)).as_standard_layout().into_owned()
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    #[test]
    fn used_columns_span_every_rows_true_values() {
        let mask = array![[false, false, true, true], [false, true, true, false]];
        assert_eq!(used_columns(&mask), 1..4);
        assert_eq!(used_columns(&array![[false, false], [false, false]]), 2..2);
        let kept = keep_range(array![[1, 2, 3, 4], [5, 6, 7, 8]], 1, 1..3);
        assert_eq!(kept, array![[2, 3], [6, 7]]);
        assert!(kept.is_standard_layout());
    }
}

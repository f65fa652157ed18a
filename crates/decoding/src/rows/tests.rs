use ndarray::{Array2, Array3, ArrayD, array};

use super::*;

type HostState = RowState<ArrayD<f32>, Array2<bool>>;

/// Rows numbered by value: cached tensor element (row r, column c) = 10·r + c + 1.
fn cached(rows: usize, width: usize) -> ArrayD<f32> {
    Array3::from_shape_fn((rows, width, 1), |(r, c, _)| (10 * r + c + 1) as f32).into_dyn()
}

/// Two rows: source widths 3 (row 0 uses 2 columns, row 1 all 3), no steps yet, and a hidden
/// state, a source-side and a steps-side tensor.
fn two_rows() -> HostState {
    let source_mask = array![[true, true, false], [true, true, true]];
    let steps_mask = Array2::from_elem((2, 0), false);
    let tensors =
        vec![(Columns::Fixed, cached(2, 1)), (Columns::Source(1), cached(2, 3)), (Columns::Steps(1), cached(2, 0))];
    HostState::new(source_mask, steps_mask, 2, tensors)
}

/// One row with a 5-column source that has taken no step yet.
fn one_late_row() -> HostState {
    HostState::new(
        array![[true, true, true, true, true]],
        Array2::from_elem((1, 0), false),
        1,
        vec![(Columns::Fixed, cached(1, 1)), (Columns::Source(1), cached(1, 5)), (Columns::Steps(1), cached(1, 0))],
    )
}

/// One decoded step: the steps tensor gains a column per row (value 100 + row), the mask a
/// `true` column.
fn step(state: &mut HostState) {
    let rows = state.rows();
    let extra = Array3::from_shape_fn((rows, 1, 1), |(r, _, _)| 100.0 + r as f32).into_dyn();
    let steps = std::mem::replace(state.tensor_mut(2), ArrayD::zeros(vec![0]));
    *state.tensor_mut(2) = ndarray::concatenate(ndarray::Axis(1), &[steps.view(), extra.view()]).unwrap();
    let ones = Array2::from_elem((rows, 1), true);
    let mask = ndarray::concatenate(ndarray::Axis(1), &[state.steps_mask().view(), ones.view()]).unwrap();
    state.advance(mask);
}

fn column(t: &ArrayD<f32>, row: usize) -> Vec<f32> {
    t.index_axis(ndarray::Axis(0), row).iter().copied().collect()
}

#[test]
fn select_keeps_the_rows_listed_and_drops_the_source_columns_no_row_uses() {
    let mut state = two_rows();
    step(&mut state);
    state.select(&[0, 0]).unwrap();
    assert_eq!(state.rows(), 2);
    assert_eq!(state.positions(), &[1, 1]);
    assert_eq!(state.source_mask(), &array![[true, true], [true, true]]);
    assert_eq!(column(state.tensor(0), 1), vec![1.0]);
    assert_eq!(column(state.tensor(1), 1), vec![1.0, 2.0], "row 0's first two source columns");
    assert_eq!(column(state.tensor(2), 1), vec![100.0]);
    assert!(state.tensor(1).is_standard_layout());
}

#[test]
fn append_pads_to_the_wider_source_and_the_longer_steps_then_leaving_rows_trims_them_again() {
    let mut early = two_rows();
    step(&mut early);
    step(&mut early);
    early.append(one_late_row()).unwrap();
    assert_eq!(early.positions(), &[2, 2, 0]);
    assert_eq!(early.source_mask().dim(), (3, 5));
    assert_eq!(early.steps_mask(), &array![[true, true], [true, true], [false, false]]);
    assert_eq!(column(early.tensor(1), 0), vec![1.0, 2.0, 3.0, 0.0, 0.0], "padding is zeros");
    assert_eq!(column(early.tensor(1), 2), vec![1.0, 2.0, 3.0, 4.0, 5.0]);
    step(&mut early);
    assert_eq!(column(early.tensor(2), 2), vec![0.0, 0.0, 102.0]);

    // The two early rows finish: the late row's source width stays, the steps before it joined go.
    early.select(&[2]).unwrap();
    assert_eq!(early.steps_mask(), &array![[true]]);
    assert_eq!(column(early.tensor(2), 0), vec![102.0]);
    assert_eq!(early.source_mask().dim(), (1, 5));
    assert_eq!(early.positions(), &[1]);

    // Only the short early row stays: the source narrows to the columns it uses.
    let mut state = two_rows();
    state.append(one_late_row()).unwrap();
    state.select(&[0]).unwrap();
    assert_eq!(state.source_mask(), &array![[true, true]]);
    assert_eq!(column(state.tensor(1), 0), vec![1.0, 2.0]);
}

#[test]
fn used_columns_span_every_rows_true_values() {
    let mask = array![[false, false, true, true], [false, true, true, false]];
    assert_eq!(mask.used_columns().unwrap(), 1..4);
    assert_eq!(array![[false, false], [false, false]].used_columns().unwrap(), 2..2);
}

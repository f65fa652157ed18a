use ndarray::{Array, ArrayD, IxDyn};

use super::*;

/// [rows, 2, steps] with value 100·row + 10·head + step + 1 (never 0, so zeros are padding).
fn cache(rows: usize, steps: usize) -> ArrayD<f32> {
    Array::from_shape_fn(IxDyn(&[rows, 2, steps]), |i| (100 * i[0] + 10 * i[1] + i[2] + 1) as f32)
}

/// Step `step` of each of `rows` rows, as the decoder returns it: [rows, 2, 1].
fn step_of(rows: usize, step: impl Fn(usize) -> usize) -> ArrayD<f32> {
    Array::from_shape_fn(IxDyn(&[rows, 2, 1]), |i| (100 * i[0] + 10 * i[1] + step(i[0]) + 1) as f32)
}

/// Writes row `r` of `step` at column `at[r]` through the writable allocation, as a model does.
fn put_columns(array: &mut GrowingArray<f32>, step: ArrayD<f32>, at: &[usize]) {
    let furthest = at.iter().max().map_or(0, |&c| c + 1);
    let mut allocation = array.writable_allocation(furthest);
    for (row, &column) in at.iter().enumerate() {
        allocation
            .index_axis_mut(Axis(0), row)
            .slice_axis_mut(Axis(1), Slice::from(column..column + 1))
            .assign(&step.index_axis(Axis(0), row));
    }
}

#[test]
fn each_row_writes_its_step_at_its_own_column_and_the_room_doubles() {
    let mut array = GrowingArray::new(cache(3, 0), 2);
    assert_eq!((array.columns(), array.capacity()), (0, 0));
    for step in 0..FIRST_ROOM + 1 {
        put_columns(&mut array, step_of(3, |_| step), &[step; 3]);
    }
    assert_eq!((array.columns(), array.capacity()), (FIRST_ROOM + 1, 2 * FIRST_ROOM));
    assert_eq!(array.used(), cache(3, FIRST_ROOM + 1).view());
    assert!(array.allocation().is_standard_layout());
    assert!(array.allocation().slice_axis(Axis(2), Slice::from(FIRST_ROOM + 1..)).iter().all(|&x| x == 0.0));

    // Rows at different steps: row 1 is one step behind, row 2 joined three steps later.
    let mut array = GrowingArray::with_room(cache(3, 0), 2, 4);
    let before = array.allocation().as_ptr();
    let columns = [[0, 0, 0], [1, 1, 1], [2, 1, 2], [3, 2, 3]];
    for at in columns {
        put_columns(&mut array, step_of(3, |r| at[r]), &at);
    }
    assert_eq!((array.columns(), array.capacity()), (4, 4));
    assert_eq!(array.allocation().as_ptr(), before, "written in place while the room lasts");
    assert_eq!(array.used().slice_axis(Axis(0), Slice::from(0..1)), cache(1, 4).view());
    let lagging = array.used().index_axis(Axis(0), 1).to_owned();
    assert_eq!(lagging.iter().filter(|&&x| x == 0.0).count(), 2, "row 1 used 3 of 4 columns: {lagging}");
}

#[test]
fn rows_leaving_in_order_move_down_in_place_and_other_selections_gather() {
    let array = GrowingArray::with_room(cache(4, 5), 2, 8);
    for rows in [vec![1, 3], vec![3, 1], vec![0, 3, 2]] {
        let kept = array.clone().select_rows(&rows).unwrap();
        assert_eq!(kept.used(), cache(4, 5).select(Axis(0), &rows).view(), "{rows:?}");
        assert_eq!((kept.rows(), kept.capacity(), kept.row_room()), (rows.len(), 8, 4), "the room stays");
    }
    let mut in_place = array.clone();
    let before = in_place.allocation().as_ptr();
    in_place = in_place.select_rows(&vec![3, 1, 2]).unwrap();
    assert_eq!(in_place.allocation().as_ptr(), before, "no row moves up: compacted in place");
    assert_eq!(in_place.used(), cache(4, 5).select(Axis(0), &[3, 1, 2]).view());

    let beams = array.select_rows(&vec![2, 0, 0]).unwrap();
    assert_eq!(beams.used(), cache(4, 5).select(Axis(0), &[2, 0, 0]).view());
    assert_eq!((beams.capacity(), beams.row_room()), (8, 4));
    assert!(beams.allocation().is_standard_layout());
}

#[test]
fn narrowing_forgets_trailing_columns_shrinks_a_large_room_and_moves_leading_ones() {
    let array = GrowingArray::with_room(cache(3, 5), 2, 8);
    let trailing = array.clone().narrow(2, 0..3).unwrap();
    assert_eq!((trailing.width(2), trailing.capacity()), (3, 8), "forgotten, not copied");
    assert_eq!(trailing.used(), cache(3, 3).view());

    let leading = array.clone().narrow(2, 2..5).unwrap();
    assert_eq!(leading.used(), cache(3, 5).slice_axis(Axis(2), Slice::from(2..5)));
    assert_eq!(leading.capacity(), 8);

    let large = GrowingArray::with_room(cache(3, 5), 2, 200).narrow(2, 0..5).unwrap();
    assert_eq!((large.capacity(), large.used()), (2 * FIRST_ROOM, cache(3, 5).view()));

    // Padding a narrowed array zeroes what the forgotten columns left behind.
    let padded = trailing.pad(2, 6).unwrap();
    assert_eq!(padded.width(2), 6);
    assert!(padded.used().slice_axis(Axis(2), Slice::from(3..6)).iter().all(|&x| x == 0.0));
    assert_eq!(padded.used().slice_axis(Axis(2), Slice::from(0..3)), cache(3, 3).view());
}

#[test]
fn joining_rows_are_written_into_the_room_without_moving_the_rows_there() {
    let mut running = GrowingArray::with_room(cache(2, 6), 2, 8);
    running.reserve_rows(6);
    let before = running.allocation().as_ptr();
    let newcomers = GrowingArray::new(cache(3, 0), 2).pad(2, 6).unwrap();
    let joined = running.stack_rows(newcomers).unwrap();
    assert_eq!(joined.allocation().as_ptr(), before, "no reallocation while the room lasts");
    assert_eq!((joined.rows(), joined.columns(), joined.capacity()), (5, 6, 8));
    assert_eq!(joined.used().slice_axis(Axis(0), Slice::from(0..2)), cache(2, 6).view());
    assert!(joined.used().slice_axis(Axis(0), Slice::from(2..5)).iter().all(|&x| x == 0.0));

    // Past the room, the rows are copied once into a doubled room.
    let more = GrowingArray::new(cache(4, 6), 2);
    let joined = joined.stack_rows(more).unwrap();
    assert_eq!((joined.rows(), joined.row_room()), (9, FIRST_ROOM));
    assert_eq!(joined.used().slice_axis(Axis(0), Slice::from(5..9)), cache(4, 6).view());
    assert!(joined.allocation().is_standard_layout());
}

#[test]
fn an_exact_array_keeps_no_room() {
    let source = GrowingArray::exact(cache(2, 5), 2);
    let wider = source.clone().pad(2, 7).unwrap();
    assert_eq!((wider.columns(), wider.capacity()), (7, 7));
    assert_eq!(wider.used().slice_axis(Axis(2), Slice::from(0..5)), cache(2, 5).view());
    let narrower = wider.narrow(2, 0..4).unwrap();
    assert_eq!((narrower.columns(), narrower.capacity()), (4, 4));
    assert_eq!(narrower.used(), cache(2, 4).view());
    let gathered = narrower.select_rows(&vec![1, 1, 0]).unwrap().pad(2, 6).unwrap();
    assert_eq!(gathered.capacity(), 6, "still exact after a gather");
}

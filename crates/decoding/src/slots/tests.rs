use super::Slots;

fn slots(rows: usize) -> Slots<usize> {
    let mut slots = Slots::default();
    (0..rows).for_each(|row| slots.push(row));
    slots
}

/// Kills the rows listed at `position`.
fn kill(slots: &mut Slots<usize>, rows: &[usize], position: usize) {
    slots.retire(|_, row| rows.contains(row).then_some(position));
}

#[test]
fn a_dead_row_stays_until_its_waste_would_pass_the_rows_in_the_state() {
    let mut slots = slots(8);
    kill(&mut slots, &[3], 5);
    assert_eq!((slots.len(), slots.live()), (8, 7));
    // One dead row among eight: stepped eight times before a gather is worth it.
    for step in 0..8 {
        assert!(!slots.should_compact(100), "step {step}");
        slots.stepped_dead();
    }
    assert!(slots.should_compact(100));
    // The last row fills the hole; the others stay.
    assert_eq!(slots.compact(), vec![0, 1, 2, 7, 4, 5, 6]);
    assert!(slots.is_compact() && !slots.should_compact(100));
    assert_eq!(slots.live_rows().copied().collect::<Vec<_>>(), vec![0, 1, 2, 7, 4, 5, 6]);
}

#[test]
fn compaction_moves_rows_from_the_end_into_the_holes_only() {
    let mut slots = slots(9);
    kill(&mut slots, &[0, 3, 7, 8], 2);
    let keep = slots.compact();
    assert_eq!(keep, vec![5, 1, 2, 6, 4]);
    assert!(keep.iter().enumerate().all(|(to, &from)| from >= to), "no row moves up: {keep:?}");
    assert_eq!(slots.live_rows().copied().collect::<Vec<_>>(), keep);
}

#[test]
fn many_dead_rows_compact_sooner() {
    let mut slots = slots(8);
    kill(&mut slots, &[0, 1, 2, 3, 4], 5);
    // Five dead rows: 0 + 5 ≤ 8 now, 5 + 5 > 8 after one step.
    assert!(!slots.should_compact(100));
    slots.stepped_dead();
    assert!(slots.should_compact(100));
}

#[test]
fn a_dead_row_never_steps_past_the_furthest_live_position() {
    let mut slots = slots(64);
    kill(&mut slots, &[10], 8);
    assert!(!slots.should_compact(10));
    slots.stepped_dead(); // position 9: the last a live row with 10 tokens at most uses
    assert!(!slots.should_compact(10));
    slots.stepped_dead(); // position 10
    assert!(slots.should_compact(10), "a dead row at the limit is compacted before it steps");
}

#[test]
fn only_dead_rows_means_compact_and_filler_fills_dead_rows() {
    let mut slots = slots(3);
    kill(&mut slots, &[1], 0);
    assert_eq!(slots.per_row(|&row| row as u32 * 10, 99), vec![0, 99, 20]);
    kill(&mut slots, &[0, 2], 0);
    assert_eq!(slots.live(), 0);
    assert!(slots.should_compact(100));
    assert_eq!(slots.compact(), Vec::<usize>::new());
    assert_eq!(slots.len(), 0);
}

#[test]
fn rows_joining_go_after_dead_ones() {
    let mut slots = slots(2);
    kill(&mut slots, &[0], 3);
    slots.push(7);
    assert_eq!(slots.per_row(|&row| row, 99), vec![99, 1, 7]);
    // The newcomer fills the dead row's place.
    assert_eq!(slots.compact(), vec![2, 1]);
    assert_eq!(slots.live_rows().copied().collect::<Vec<_>>(), vec![7, 1]);
}

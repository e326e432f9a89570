use crate::transformer::relative_bucket;

#[test]
fn relative_buckets_match_huggingface() {
    // HuggingFace's MPNetEncoder.relative_position_bucket(torch.arange(-600, 601),
    // num_buckets=32, max_distance=128): (first offset, bucket) of each run of equal buckets.
    let runs: [(i64, usize); 31] = [
        (-600, 15),
        (-90, 14),
        (-63, 13),
        (-45, 12),
        (-31, 11),
        (-22, 10),
        (-15, 9),
        (-11, 8),
        (-7, 7),
        (-6, 6),
        (-5, 5),
        (-4, 4),
        (-3, 3),
        (-2, 2),
        (-1, 1),
        (0, 0),
        (1, 17),
        (2, 18),
        (3, 19),
        (4, 20),
        (5, 21),
        (6, 22),
        (7, 23),
        (8, 24),
        (12, 25),
        (16, 26),
        (23, 27),
        (32, 28),
        (46, 29),
        (64, 30),
        (91, 31),
    ];
    for rel in -600i64..=600 {
        let want = runs.iter().rev().find(|(start, _)| *start <= rel).unwrap().1;
        assert_eq!(relative_bucket(rel, 32), want, "offset {rel}");
    }
}

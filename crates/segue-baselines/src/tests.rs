use super::*;

/// Four training sessions over 6 tracks, worked by hand below:
/// s0 = 0 1 2 (ends at 100), s1 = 0 3 (200), s2 = 1 2 4 (300), s3 = 5 (50).
const FLAT: [u32; 9] = [0, 1, 2, 0, 3, 1, 2, 4, 5];
const OFFSETS: [usize; 5] = [0, 3, 5, 8, 9];
const ENDS: [i64; 4] = [100, 200, 300, 50];

fn data() -> TrainingSessions<'static> {
    TrainingSessions::new(&FLAT, &OFFSETS, &ENDS, 6).unwrap()
}

fn scores(rule: &dyn NextTrack, input: &[u32]) -> Vec<f32> {
    let mut out = vec![f32::NAN; 6];
    rule.score_into(input, &mut out);
    out
}

fn close(a: &[f32], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (f64::from(*x) - y).abs() < 1e-6)
}

#[test]
fn popularity_and_repeat_order() {
    let pop = Popularity::fit(&data());
    assert_eq!(scores(&pop, &[3]), vec![2.0, 2.0, 2.0, 1.0, 1.0, 1.0]);
    let rep = RepeatThenPopularity::fit(&data());
    let s = scores(&rep, &[4, 0, 3, 0]);
    // The session's tracks first, the most recent first (0 last played at position 3), then
    // the rest by popularity.
    let mut order: Vec<usize> = (0..6).collect();
    order.sort_by(|&a, &b| s[b].total_cmp(&s[a]));
    assert_eq!(order[..3], [0, 3, 4]);
    assert!(s[1] == 2.0 && s[2] == 2.0 && s[5] == 1.0);
    assert!(s[4] > 1e29 && s[3] > s[4] && s[0] > s[3]);
}

#[test]
fn sknn_by_hand() {
    let sknn = Sknn::fit(&data(), &KnnParams::default()).unwrap();
    // Input {0, 1}: s0 shares 2 of 3 -> 2/sqrt(6); s1 shares 1 of 2 -> 1/2; s2 1 of 3 -> 1/sqrt(6).
    let (a, b, c) = (2.0 / 6f64.sqrt(), 0.5, 1.0 / 6f64.sqrt());
    let n = sknn.neighbours(&[0, 1]);
    assert_eq!(n.iter().map(|x| x.0).collect::<Vec<_>>(), [0, 1, 2]);
    assert!(close(&scores(&sknn, &[0, 1]), &[a + b, a + c, a + c, b, c, 0.0]));
    // Order and repeats of the input do not matter to SKNN.
    assert_eq!(scores(&sknn, &[1, 0, 1]), scores(&sknn, &[0, 1]));
    // k = 1: the most similar session alone.
    let one = Sknn::fit(&data(), &KnnParams { k: 1, sample_size: 500 }).unwrap();
    assert!(close(&scores(&one, &[0, 1]), &[a, a, a, 0.0, 0.0, 0.0]));
    // sample_size = 1: only the most recent session sharing a track (s2) is a candidate.
    let recent = Sknn::fit(&data(), &KnnParams { k: 100, sample_size: 1 }).unwrap();
    assert!(close(&scores(&recent, &[0, 1]), &[0.0, c, c, 0.0, c, 0.0]));
    // An input sharing nothing scores nothing; tracks outside the catalogue are ignored.
    assert_eq!(scores(&sknn, &[9]), vec![0.0; 6]);
}

#[test]
fn vsknn_by_hand() {
    let v = Vsknn::fit(&data(), &KnnParams::default()).unwrap();
    // Input 0 1: weights 0 -> 1/2, 1 -> 2/2, over 2 distinct tracks. s0 shares both: 0.75;
    // s1 shares 0: 0.25; s2 shares 1: 0.5. Decay: s0 and s2 hold the last track (1/1), s1 only
    // the one before (1/2).
    let n = v.neighbours(&[0, 1]);
    assert_eq!(n, vec![(0, 0.75), (2, 0.5), (1, 0.25)]);
    let (s0, s1, s2) = (0.75, 0.125, 0.5);
    assert!(close(&scores(&v, &[0, 1]), &[s0 + s1, s0 + s2, s0 + s2, s1, s2, 0.0]));
    // Order matters: 1 then 0 weighs 0 more, and s1 (holding 0) now holds the last track.
    let n = v.neighbours(&[1, 0]);
    assert_eq!(n, vec![(0, 0.75), (1, 0.5), (2, 0.25)]);
    let (s0, s1, s2) = (0.75, 0.5, 0.125);
    assert!(close(&scores(&v, &[1, 0]), &[s0 + s1, s0 + s2, s0 + s2, s1, s2, 0.0]));
    // A repeated track weighs its last position: 1 0 1 gives 1 -> 3/3 and 0 -> 2/3.
    let n = v.neighbours(&[1, 0, 1]);
    assert!((n[0].1 - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12, "{n:?}");
}

#[test]
fn sequential_rules_steps_and_pruning() {
    let flat = [0, 1, 0, 2];
    let data = TrainingSessions::new(&flat, &[0, 4], &[1], 3).unwrap();
    // Rules of 0: -> 1 (gap 1), -> 0 (gap 2), -> 2 (gaps 1 and 3).
    let sr = SequentialRules::fit(&data, &SrParams { steps: 10, pruning: 0 }).unwrap();
    let r = sr.rules_of(0);
    assert_eq!(r.iter().map(|x| x.0).collect::<Vec<_>>(), [2, 1, 0]);
    assert!((r[0].1 - 4.0 / 3.0).abs() < 1e-6 && r[1].1 == 1.0 && r[2].1 == 0.5);
    assert_eq!(sr.rules_of(1), &[(0, 1.0), (2, 0.5)]);
    // Two steps: gap 3 no longer counts, and 1 and 2 tie: the first seen (1) comes first.
    let sr = SequentialRules::fit(&data, &SrParams { steps: 2, pruning: 0 }).unwrap();
    assert_eq!(sr.rules_of(0), &[(1, 1.0), (2, 1.0), (0, 0.5)]);
    let sr = SequentialRules::fit(&data, &SrParams { steps: 2, pruning: 2 }).unwrap();
    assert_eq!(sr.rules_of(0), &[(1, 1.0), (2, 1.0)]);
    assert_eq!(sr.len(), 4);
    // Only the last track of the input scores.
    let mut out = vec![9.0; 3];
    sr.score_into(&[0, 1], &mut out);
    assert_eq!(out, vec![1.0, 0.0, 0.5]);
    assert!(SequentialRules::fit(&data, &SrParams { steps: 0, pruning: 0 }).is_err());
}

#[test]
fn bad_training_data_is_named() {
    assert!(TrainingSessions::new(&[0, 7], &[0, 2], &[1], 5).is_err());
    assert!(TrainingSessions::new(&[0, 1], &[0, 3], &[1], 5).is_err());
    let e = TrainingSessions::new(&[0, 1], &[0, 2], &[], 5).unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { expected: 1, found: 0, .. }), "{e:?}");
    assert!(Sknn::fit(&data(), &KnnParams { k: 0, sample_size: 1 }).is_err());
}

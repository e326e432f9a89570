use super::*;
use proptest::prelude::*;

/// Breakdowns as a recommender uses them: seen in training or not, repeated in the session or not.
const GROUPS: [&str; 4] = ["seen", "unseen", "repeat", "new"];

fn q(user: u32, target: u32, seen_in_train: bool, repeat: bool) -> Query {
    Query::new(user, target).in_group(if seen_in_train { 0 } else { 1 }).in_group(if repeat {
        2
    } else {
        3
    })
}

fn grouped(ks: &[usize], items: usize) -> Evaluator {
    Evaluator::with_groups(ks, items, &GROUPS).unwrap()
}

#[test]
fn ties_count_against_the_model() {
    let s = [0.1, 0.5, 0.5, 0.2];
    assert_eq!(rank(&s, 1).unwrap(), 2);
    assert_eq!(rank(&s, 2).unwrap(), 2);
    assert_eq!(rank(&s, 3).unwrap(), 3);
    assert_eq!(rank(&s, 0).unwrap(), 4);
    // A constant model ranks every target last.
    assert_eq!(rank(&[0.0; 7], 3).unwrap(), 7);
    // Infinities rank; a NaN cannot.
    assert_eq!(rank(&[f32::INFINITY, 1.0, f32::NEG_INFINITY], 1).unwrap(), 2);
    let e = rank(&[0.0, f32::NAN, 1.0], 2).unwrap_err();
    assert!(matches!(e, Error::NanScore { prediction: None, item: 1 }), "{e:?}");
    let e = rank(&[0.0, 1.0], 2).unwrap_err().to_string();
    assert_eq!(e, "target item 2 is outside the 2 scored items");
}

/// Three predictions worked by hand at k = 1, 2, 3 over 4 items.
#[test]
fn metrics_by_hand() {
    let mut e = grouped(&[1, 2, 3], 4);
    e.add_rank(&q(7, 0, true, false), 1).unwrap();
    e.add_rank(&q(7, 1, true, true), 2).unwrap();
    e.add_rank(&q(9, 2, false, false), 4).unwrap();
    let r = e.report();
    let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12);
    assert_eq!(r.all.count, 3);
    assert!(close(&r.all.hit, &[1.0 / 3.0, 2.0 / 3.0, 2.0 / 3.0]));
    assert!(close(&r.all.mrr, &[1.0 / 3.0, 1.5 / 3.0, 1.5 / 3.0]));
    let n2 = 1.0 / 3f64.log2();
    assert!(close(&r.all.ndcg, &[1.0 / 3.0, (1.0 + n2) / 3.0, (1.0 + n2) / 3.0]));
    // Per user: user 7 has hit@2 = 1, user 9 has 0, so the per-user mean is 0.5, not 2/3.
    assert_eq!(r.per_user.count, 2);
    assert!(close(&r.per_user.hit, &[0.25, 0.5, 0.5]));
    assert!(close(&r.users[&7].mrr, &[0.5, 0.75, 0.75]));
    // Breakdowns.
    let g = |name| r.group(name).unwrap();
    assert_eq!(GROUPS.map(|name| g(name).count), [2, 1, 1, 2]);
    assert!(close(&g("unseen").hit, &[0.0, 0.0, 0.0]));
    assert!(close(&g("repeat").hit, &[0.0, 1.0, 1.0]));
    assert!(close(&g("new").hit, &[0.5, 0.5, 0.5]));
    assert_eq!(r.group("cold"), None);
    assert_eq!(r.hit_at(2), Some(2.0 / 3.0));
    assert_eq!(r.hit_at(5), None);
}

#[test]
fn bad_input_is_named() {
    assert!(Evaluator::new(&[], 3).is_err());
    assert!(Evaluator::new(&[0, 10], 3).is_err());
    assert!(Evaluator::new(&[10], 0).is_err());
    let mut e = Evaluator::new(&[1], 3).unwrap();
    let err = e.add_scores(&[q(0, 0, true, false)], &[0.0, 1.0]).unwrap_err().to_string();
    assert_eq!(err, "scores (1 queries over 3 items): expected 3, found 2");
    let qs = [q(0, 0, true, false), q(4, 2, true, false)];
    let err = e.add_scores(&qs, &[0.0, 1.0, 2.0, 0.0, f32::NAN, 2.0]).unwrap_err();
    assert!(matches!(err, Error::NanScore { prediction: Some(1), item: 1 }), "{err:?}");
    assert_eq!(err.to_string(), "prediction 1: the score of item 1 is NaN");
    // Of several bad rows, the first is named.
    let qs = [q(0, 0, true, false), q(4, 2, true, false), q(5, 0, true, false)];
    let scores = [0.0, 1.0, 2.0, 0.0, f32::NAN, 2.0, f32::NAN, 0.0, 0.0];
    let err = e.add_scores(&qs, &scores).unwrap_err().to_string();
    assert!(err.starts_with("prediction 1:"), "{err}");
    let qs = [q(0, 0, true, false), q(4, 7, true, false)];
    let err = e.add_scores(&qs, &[0.0; 6]).unwrap_err();
    assert!(
        matches!(err, Error::TargetOutOfRange { prediction: Some(1), target: 7, items: 3 }),
        "{err:?}"
    );
    // Nothing of a failed block is counted.
    assert_eq!(e.report().all.count, 0);
}

#[test]
fn batched_parallel_evaluation_equals_one_block() {
    let items = 50;
    let queries: Vec<Query> =
        (0..97u32).map(|i| q(i % 5, (i * 7) % items, i % 3 != 0, i % 4 == 0)).collect();
    let score_row = |qq: &Query| -> Vec<f32> {
        (0..items).map(|j| ((j * 31 + qq.target * 17 + qq.user) % 23) as f32).collect()
    };
    let all: Vec<f32> = queries.iter().flat_map(score_row).collect();
    let mut one = grouped(&PAPER_KS, items as usize);
    one.add_scores(&queries, &all).unwrap();
    let batched = evaluate(grouped(&PAPER_KS, items as usize), &queries, 8, |_, qs| {
        Ok(qs.iter().flat_map(score_row).collect())
    })
    .unwrap();
    assert_eq!(one.report(), batched);
    assert!(batched.all.hit[0] > 0.0 && batched.all.hit[0] < 1.0);
    // A scoring error names its batch.
    let err = evaluate(grouped(&PAPER_KS, items as usize), &queries, 8, |_, qs| {
        Ok(qs.iter().flat_map(|_| vec![0.0; 3]).collect())
    })
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("scores of batch 0 (8 queries over 50 items): expected 400"), "{err}");
    // Several failing batches: the first in order is named, however the threads ran.
    for _ in 0..20 {
        let err = evaluate(grouped(&PAPER_KS, items as usize), &queries, 8, |start, qs| {
            let n = if start >= 24 { 1 } else { items as usize };
            Ok(qs.iter().flat_map(|_| vec![0.0; n]).collect())
        })
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("scores of batch 3 "), "{err}");
    }
}

#[test]
fn ranks_outside_the_catalogue_are_errors() {
    let mut e = Evaluator::new(&[1, 2], 3).unwrap();
    for bad in [0, 4, usize::MAX] {
        let err = e.add_rank(&q(0, 0, true, false), bad).unwrap_err();
        assert!(matches!(err, Error::InvalidRank { rank, items: 3, .. } if rank == bad), "{err:?}");
    }
    // Nothing was recorded: the report has no infinite or NaN figure.
    let r = e.report();
    assert_eq!(r.all.count, 0);
    e.add_rank(&q(0, 0, true, false), 3).unwrap();
    let r = e.report();
    assert!(r.all.mrr.iter().chain(&r.all.ndcg).all(|v| v.is_finite()));
}

#[test]
fn report_serialises() {
    let mut e = grouped(&PAPER_KS, 100);
    e.add_rank(&q(1, 3, true, false), 12).unwrap();
    e.add_rank(&q(70_000, 5, false, true), 2).unwrap();
    let json = serde_json::to_string(&e.report()).unwrap();
    let back: Report = serde_json::from_str(&json).unwrap();
    assert_eq!(back, e.report());
    // Each group is a key of its own beside the report's fields (the metrics.json format).
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["unseen"]["count"], 1);
    assert_eq!(value["users"]["70000"]["count"], 1);
}

#[test]
fn group_names_are_checked() {
    assert!(Evaluator::with_groups(&[10], 5, &["a", "a"]).is_err());
    assert!(Evaluator::with_groups(&[10], 5, &["users"]).is_err());
    let many: Vec<String> = (0..=MAX_GROUPS).map(|i| format!("g{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert!(Evaluator::with_groups(&[10], 5, &many).is_err());
    assert!(Evaluator::with_groups(&[10], 5, &many[..MAX_GROUPS]).is_ok());
    // A query outside every group counts in the means only.
    let mut e = Evaluator::with_groups(&[1], 2, &["a"]).unwrap();
    e.add_rank(&Query::new(0, 1), 1).unwrap();
    let r = e.report();
    assert_eq!((r.all.count, r.group("a").unwrap().count), (1, 0));
}

proptest! {
    /// The rank is the target's 1-based position when ties are broken against it, and does
    /// not change when other items are reordered.
    #[test]
    fn rank_is_the_pessimistic_sort_position(
        scores in prop::collection::vec(-3i32..3, 1..40),
        target_pick in any::<prop::sample::Index>(),
        rotate in 0usize..40,
    ) {
        let scores: Vec<f32> = scores.into_iter().map(|s| s as f32).collect();
        let t = target_pick.index(scores.len());
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| {
            scores[b].total_cmp(&scores[a]).then_with(|| (a == t).cmp(&(b == t)))
        });
        let expected = order.iter().position(|&i| i == t).unwrap() + 1;
        prop_assert_eq!(rank(&scores, t).unwrap(), expected);
        let mut others: Vec<f32> = scores.iter().enumerate().filter(|(i, _)| *i != t).map(|(_, &s)| s).collect();
        let n = others.len();
        if n > 0 { others.rotate_left(rotate % n); }
        let mut moved = others;
        moved.insert(0, scores[t]);
        prop_assert_eq!(rank(&moved, 0).unwrap(), expected);
    }

    /// Any rank outside 1..=items is refused with a typed error, any inside is accepted, and
    /// every figure of the report stays finite and in [0, 1].
    #[test]
    fn only_ranks_in_the_catalogue_are_accepted(
        items in 1usize..60,
        ranks in prop::collection::vec(0usize..80, 1..40),
    ) {
        let mut e = grouped(&PAPER_KS, items);
        let mut accepted = 0u64;
        for (i, &r) in ranks.iter().enumerate() {
            let result = e.add_rank(&q(i as u32 % 4, 0, i % 2 == 0, i % 3 == 0), r);
            if (1..=items).contains(&r) {
                prop_assert!(result.is_ok());
                accepted += 1;
            } else {
                let is_invalid_rank = matches!(result, Err(Error::InvalidRank { .. }));
                prop_assert!(is_invalid_rank);
            }
        }
        let rep = e.report();
        prop_assert_eq!(rep.all.count, accepted);
        for m in [&rep.all, &rep.per_user].into_iter().chain(rep.groups.values()) {
            for v in m.hit.iter().chain(&m.mrr).chain(&m.ndcg) {
                prop_assert!(v.is_finite() && (0.0..=1.0).contains(v));
            }
        }
    }

    /// Hit, MRR and NDCG grow with k and stay in [0, 1]; MRR <= NDCG <= HR.
    #[test]
    fn metrics_are_monotone_and_ordered(ranks in prop::collection::vec(1usize..200, 1..50)) {
        let mut e = Evaluator::new(&PAPER_KS, 200).unwrap();
        for (i, &r) in ranks.iter().enumerate() {
            e.add_rank(&q(i as u32 % 3, 0, true, false), r).unwrap();
        }
        let m = e.report().all;
        for i in 0..PAPER_KS.len() {
            prop_assert!(m.mrr[i] <= m.ndcg[i] + 1e-12 && m.ndcg[i] <= m.hit[i] + 1e-12);
            prop_assert!((0.0..=1.0).contains(&m.hit[i]));
            if i > 0 {
                prop_assert!(m.hit[i] >= m.hit[i - 1] && m.mrr[i] >= m.mrr[i - 1] && m.ndcg[i] >= m.ndcg[i - 1]);
            }
        }
    }
}

/// Scores with many ties (small integers) for `queries` over `items`, a row per query.
fn tied_scores(queries: &[Query], items: u32, salt: u32) -> Vec<f32> {
    queries
        .iter()
        .flat_map(|q| {
            (0..items).map(move |j| ((j * 31 + q.target * 17 + q.user * salt) % 13) as f32)
        })
        .collect()
}

/// Blocked ranking against the full rows: the same report, ranks exact up to the deepest
/// cut-off and lower bounds past it, and exact everywhere with one block.
fn check_blocked(
    queries: &[Query],
    items: u32,
    ks: &[usize],
    batch: usize,
    block: usize,
    salt: u32,
) {
    let all = tied_scores(queries, items, salt);
    let n = items as usize;
    let row = |i: usize| &all[i * n..(i + 1) * n];
    let (full, full_ranks) = evaluate_ranked(grouped(ks, n), queries, batch, |first, qs| {
        Ok((first..first + qs.len()).flat_map(|i| row(i).to_vec()).collect())
    })
    .unwrap();
    let (blocked, ranks) = evaluate_blocked(
        grouped(ks, n),
        queries,
        batch,
        block,
        |first, qs| Ok(first..first + qs.len()),
        |rows, _, items| Ok(rows.clone().flat_map(|i| row(i)[items.clone()].to_vec()).collect()),
    )
    .unwrap();
    assert_eq!(full, blocked, "block {block}");
    let depth = *ks.iter().max().unwrap();
    for (i, (&f, &b)) in full_ranks.iter().zip(&ranks).enumerate() {
        if f <= depth || block >= n {
            assert_eq!(f, b, "prediction {i}, block {block}");
        } else {
            assert!(b > depth && b <= f, "prediction {i}: full rank {f}, blocked {b}");
        }
    }
}

#[test]
fn blocked_ranking_equals_full_rows() {
    let items = 200u32;
    let queries: Vec<Query> =
        (0..61u32).map(|i| q(i % 4, (i * 37) % items, i % 3 != 0, i % 5 == 0)).collect();
    for block in [1, 7, 64, 199, 200, 1000] {
        check_blocked(&queries, items, &[1, 5, 10], 8, block, 3);
    }
    // A NaN is named by prediction and item, a wrong block size by its items.
    let small = [q(0, 1, true, false), q(1, 8, true, false), q(2, 3, false, true)];
    let err = evaluate_blocked(
        grouped(&[1], 10),
        &small,
        2,
        4,
        |_, _| Ok(()),
        |_, qs, r| {
            Ok(qs
                .iter()
                .flat_map(|_| r.clone().map(|j| if j == 9 { f32::NAN } else { 0.0 }))
                .collect())
        },
    )
    .unwrap_err();
    assert!(matches!(err, Error::NanScore { prediction: Some(0), item: 9 }), "{err}");
    let err = evaluate_blocked(
        grouped(&[1], 10),
        &small,
        2,
        4,
        |_, _| Ok(()),
        |_, _, _| Ok(vec![0.0; 3]),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("items 0..4"), "{err}");
}

proptest::proptest! {
    #[test]
    fn blocked_ranking_equals_full_rows_for_any_block(
        items in 1u32..120,
        n in 1usize..40,
        block in 1usize..130,
        batch in 1usize..9,
        depth in 1usize..12,
        salt in 0u32..50,
    ) {
        let queries: Vec<Query> =
            (0..n as u32).map(|i| q(i % 3, (i * 11 + salt) % items, i % 2 == 0, i % 3 == 0)).collect();
        let ks: Vec<usize> = (1..=depth).step_by(3).chain([depth]).collect();
        check_blocked(&queries, items, &ks, batch, block, salt);
    }
}

//! The feedback loop's state — datasets with versions and a frozen holdout, logged predictions,
//! corrections and the review queue, retrain decisions and leases — on SQLite and (when
//! `FLYWHEEL_TEST_POSTGRES_URL` is set) PostgreSQL.

#[macro_use]
mod common;

use common::{hex_sha256, T0};
use flywheel_store::*;

on_both!(
    datasets_are_kept_with_versions_and_the_holdout_is_frozen,
    predictions_feedback_and_review_queue,
    retrain_decisions_and_leases,
);

fn rows(pairs: &[(&str, &str)]) -> Vec<DataRow> {
    pairs
        .iter()
        .map(|(t, l)| DataRow {
            text: t.to_string(),
            labels: l.split('|').map(str::to_string).collect(),
        })
        .collect()
}

async fn datasets_are_kept_with_versions_and_the_holdout_is_frozen(store: Store, _url: String) {
    let bytes = b"model v1".to_vec();
    let base = rows(&[
        ("good film", "pos"),
        ("bad film", "neg"),
        ("both", "pos|neg"),
    ]);
    let holdout = rows(&[("great", "pos"), ("awful", "neg")]);
    let v1 = store
        .push_model_with_data(
            "m",
            &bytes,
            &hex_sha256(&bytes),
            T0,
            Some(&base),
            Some(&holdout),
        )
        .await
        .unwrap();
    assert_eq!(v1, 1);
    let info = store.base_dataset("m", 1).await.unwrap().unwrap();
    assert_eq!((info.rows, info.role.as_str()), (3, "base"));
    assert_eq!(info.sha256, dataset_sha256(&base));
    // Golden value: SHA-256 over "good film" 1F "pos" 1E "bad film" 1F "neg" 1E "both" 1F "pos"
    // 1F "neg" 1E. The frozen holdout is compared by this digest across replicas and restarts,
    // so it must not depend on the process (a seeded hasher would pass the line above).
    assert_eq!(
        info.sha256,
        "4b2180fe4f99781e5c78597e7d8a868ba7eee6ee475df8bcf7eeadb91a095f65"
    );
    assert_eq!(
        dataset_sha256(&[]),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(store.dataset_rows(info.id).await.unwrap(), base);
    let frozen = store.holdout_dataset("m").await.unwrap().unwrap();
    assert_eq!(store.dataset_rows(frozen.id).await.unwrap(), holdout);

    // The same holdout again is accepted; another one is refused and nothing is stored.
    let b2 = b"model v2".to_vec();
    let v2 = store
        .push_model_with_data("m", &b2, &hex_sha256(&b2), T0 + 1, None, Some(&holdout))
        .await
        .unwrap();
    assert_eq!(v2, 2);
    assert!(store.base_dataset("m", 2).await.unwrap().is_none());
    let other = rows(&[("fine", "pos")]);
    let b3 = b"model v3".to_vec();
    let err = store
        .push_model_with_data("m", &b3, &hex_sha256(&b3), T0 + 2, None, Some(&other))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("frozen holdout"), "{err}");
    assert_eq!(store.list_versions("m").await.unwrap().len(), 2);
    assert_eq!(
        store.holdout_dataset("m").await.unwrap().unwrap().id,
        frozen.id
    );

    // Many rows go in several INSERT statements and come back in order.
    let many: Vec<DataRow> = (0..2500)
        .map(|i| DataRow {
            text: format!("text {i}"),
            labels: vec![if i % 2 == 0 { "a" } else { "b" }.to_string()],
        })
        .collect();
    let b4 = b"model big".to_vec();
    store
        .push_model_with_data("big", &b4, &hex_sha256(&b4), T0, Some(&many), None)
        .await
        .unwrap();
    let id = store.base_dataset("big", 1).await.unwrap().unwrap().id;
    assert_eq!(store.dataset_rows(id).await.unwrap(), many);

    // A label that cannot round-trip is refused.
    let bad = vec![DataRow {
        text: "x".into(),
        labels: vec!["a\u{1f}b".into()],
    }];
    let b5 = b"model bad".to_vec();
    assert!(store
        .push_model_with_data("bad", &b5, &hex_sha256(&b5), T0, Some(&bad), None)
        .await
        .is_err());
}

fn prediction(
    tenant: &str,
    request: &str,
    index: i64,
    text: &str,
    u: Option<f64>,
) -> NewPrediction {
    NewPrediction {
        tenant: tenant.into(),
        model: "m".into(),
        version: 1,
        request_id: request.into(),
        index,
        text: text.into(),
        label: "pos".into(),
        score: 0.9,
        uncertainty: u,
        created_at: T0,
        given_label: None,
    }
}

fn feedback(tenant: &str, request: &str, prediction_id: Option<i64>, label: &str) -> NewFeedback {
    NewFeedback {
        tenant: tenant.into(),
        model: "m".into(),
        prediction_id,
        text: "some text".into(),
        labels: vec![label.into()],
        request_id: request.into(),
        request_sha256: format!("digest of {label}"),
        created_at: T0,
    }
}

async fn predictions_feedback_and_review_queue(store: Store, _url: String) {
    let logged = vec![
        prediction("acme", "r1", 0, "sure", Some(0.1)),
        prediction("acme", "r1", 1, "unsure", Some(0.9)),
        prediction("acme", "r2", 0, "middle", Some(0.5)),
        prediction("acme", "r3", 0, "a value", None),
        prediction("beta", "r1", 0, "other tenant", Some(0.95)),
    ];
    assert_eq!(store.log_predictions(&logged).await.unwrap(), 5);
    // A retry logs nothing new.
    assert_eq!(store.log_predictions(&logged[..2]).await.unwrap(), 0);

    let queue = store
        .review_queue("m", Some("acme"), ReviewStrategy::Uncertainty, 10)
        .await
        .unwrap();
    let texts: Vec<&str> = queue.iter().map(|p| p.prediction.text.as_str()).collect();
    assert_eq!(texts, ["unsure", "middle", "sure", "a value"]);
    let all = store
        .review_queue("m", None, ReviewStrategy::Uncertainty, 2)
        .await
        .unwrap();
    let texts: Vec<&str> = all.iter().map(|p| p.prediction.text.as_str()).collect();
    assert_eq!(texts, ["other tenant", "unsure"]);
    assert_eq!(
        store.count_review_queue("m", Some("acme")).await.unwrap(),
        4
    );
    assert_eq!(store.count_review_queue("m", None).await.unwrap(), 5);
    assert_eq!(store.count_review_queue("other", None).await.unwrap(), 0);
    let random = store
        .review_queue("m", Some("acme"), ReviewStrategy::Random, 10)
        .await
        .unwrap();
    assert_eq!(random.len(), 4);

    let unsure = store
        .find_prediction("acme", "r1", 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(unsure.prediction.text, "unsure");
    assert!(!unsure.labelled);
    assert!(store
        .find_prediction("beta", "r1", 1)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store.get_prediction(unsure.id).await.unwrap().unwrap(),
        unsure
    );

    // Feedback on it: stored, idempotent, and the prediction leaves the queue.
    let f = feedback("acme", "f1", Some(unsure.id), "neg");
    let (stored, duplicate) = store.add_feedback(&f).await.unwrap();
    assert!(!duplicate);
    assert_eq!(stored.feedback, f);
    let (again, duplicate) = store.add_feedback(&f).await.unwrap();
    assert!(duplicate);
    assert_eq!(again.id, stored.id);
    let conflict = feedback("acme", "f1", Some(unsure.id), "pos");
    assert!(matches!(
        store.add_feedback(&conflict).await,
        Err(Error::IdempotencyConflict(_))
    ));
    // The same request id from another tenant is another request.
    store
        .add_feedback(&feedback("beta", "f1", None, "pos"))
        .await
        .unwrap();
    assert!(matches!(
        store
            .add_feedback(&feedback("acme", "f9", Some(999_999), "pos"))
            .await,
        Err(Error::NotFound(_))
    ));
    assert!(
        store
            .get_prediction(unsure.id)
            .await
            .unwrap()
            .unwrap()
            .labelled
    );
    let queue = store
        .review_queue("m", Some("acme"), ReviewStrategy::Uncertainty, 10)
        .await
        .unwrap();
    assert!(queue.iter().all(|p| p.id != unsure.id));
    assert_eq!(queue.len(), 3);
    assert_eq!(
        store.count_review_queue("m", Some("acme")).await.unwrap(),
        3
    );

    let since = store.feedback_since("m", 0).await.unwrap();
    assert_eq!(since.len(), 2);
    assert_eq!(since[0].id, stored.id);
    let (n, upto) = store.count_feedback_since("m", 0).await.unwrap();
    assert_eq!((n, upto), (2, since[1].id));
    assert_eq!(
        store.count_feedback_since("m", upto).await.unwrap(),
        (0, upto)
    );
    assert!(store.feedback_since("m", upto).await.unwrap().is_empty());
}

async fn retrain_decisions_and_leases(store: Store, _url: String) {
    let v1 = b"champion".to_vec();
    let base = rows(&[("good", "pos"), ("bad", "neg")]);
    store
        .push_model_with_data("m", &v1, &hex_sha256(&v1), T0, Some(&base), Some(&base))
        .await
        .unwrap();
    store.set_alias("m", Alias::Champion, 1).await.unwrap();
    let base_id = store.base_dataset("m", 1).await.unwrap().map(|d| d.id);

    let decision = RetrainDecision {
        id: 0,
        name: "m".into(),
        champion_version: 1,
        challenger_version: None,
        promoted: true,
        reason: "macro-F1 +3.0 pt".into(),
        report: "{}".into(),
        feedback_rows: 7,
        feedback_upto: 42,
        seed: 5,
        cause: "manual".into(),
        at: T0 + 10,
    };
    let stored = store
        .finish_retrain(b"challenger", base_id, &decision)
        .await
        .unwrap();
    assert_eq!(stored.challenger_version, Some(2));
    assert_eq!(
        store.resolve_alias("m", Alias::Champion).await.unwrap(),
        Some(2)
    );
    assert_eq!(
        store.resolve_alias("m", Alias::Challenger).await.unwrap(),
        Some(2)
    );
    assert_eq!(
        store.base_dataset("m", 2).await.unwrap().map(|d| d.id),
        base_id
    );
    assert_eq!(
        store.get_version("m", 2).await.unwrap().bytes,
        b"challenger".to_vec()
    );

    let rejected = RetrainDecision {
        promoted: false,
        reason: "macro-F1 -4.0 pt".into(),
        champion_version: 2,
        ..decision.clone()
    };
    let stored2 = store
        .finish_retrain(b"worse", base_id, &rejected)
        .await
        .unwrap();
    assert_eq!(stored2.challenger_version, Some(3));
    assert_eq!(
        store.resolve_alias("m", Alias::Champion).await.unwrap(),
        Some(2)
    );
    assert_eq!(
        store.resolve_alias("m", Alias::Challenger).await.unwrap(),
        Some(3)
    );
    let failed = RetrainDecision {
        reason: "training failed".into(),
        promoted: false,
        ..decision.clone()
    };
    store.record_decision(&failed).await.unwrap();
    let all = store.decisions("m").await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0], stored);
    assert_eq!(all[1], stored2);
    assert_eq!(all[2].challenger_version, None);
    assert_eq!(all[2].reason, "training failed");
    // Rollback undoes the promotion.
    assert_eq!(store.rollback("m").await.unwrap(), 1);

    assert!(store.try_lease("m", "a", T0, 60).await.unwrap());
    assert!(store.try_lease("m", "a", T0 + 1, 60).await.unwrap());
    assert!(!store.try_lease("m", "b", T0 + 30, 60).await.unwrap());
    assert!(store.try_lease("m", "b", T0 + 61, 60).await.unwrap());
    store.release_lease("m", "a").await.unwrap();
    assert!(!store.try_lease("m", "a", T0 + 62, 60).await.unwrap());
    store.release_lease("m", "b").await.unwrap();
    assert!(store.try_lease("m", "a", T0 + 62, 60).await.unwrap());
}

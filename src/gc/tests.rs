use super::*;

#[test]
fn keep_reasons_round_trip_and_refuse_unknown() {
    for r in [
        KeepReason::Published,
        KeepReason::Linked,
        KeepReason::RetiredWithinGrace,
        KeepReason::NewWithinGrace,
    ] {
        let s = serde_json::to_value(r).unwrap();
        assert_eq!(KeepReason::parse(s.as_str().unwrap()), Some(r));
    }
    assert_eq!(KeepReason::parse("bogus"), None);
}

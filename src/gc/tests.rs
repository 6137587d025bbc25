use super::*;

#[test]
fn durations() {
    let d = |s| parse_duration(s).map(|d| d.as_secs()).ok();
    assert_eq!(d("0"), Some(0));
    assert_eq!(d("24h"), Some(86_400));
    assert_eq!(d("30m"), Some(1800));
    assert_eq!(d("7d"), Some(7 * 86_400));
    assert_eq!(d("1w"), Some(7 * 86_400));
    assert_eq!(d("90s"), Some(90));
    assert_eq!(d("1h30m"), Some(5400));
    for bad in ["", "h", "10", "5x", "-1h", "1.5h", "99999999999999999999w"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
}

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

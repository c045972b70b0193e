//! The keys of recycling (`max_rss_bytes`, `rss_sample_ms`, `max_lifetime_ms`,
//! `lifetime_jitter_ms`): their bounds.

use super::{GroupSpec, MAX_MS};

/// The shortest `rss_sample_ms`: sampling more often would cost more than it tells.
pub(crate) const MIN_SAMPLE_MS: u64 = 10;

/// Checks the recycling keys of one group; the error names the key.
pub(super) fn validate(g: &GroupSpec) -> Result<(), (&'static str, String)> {
    for (key, value) in [
        ("rss_sample_ms", g.rss_sample_ms),
        ("max_lifetime_ms", g.max_lifetime_ms),
        ("lifetime_jitter_ms", g.lifetime_jitter_ms),
    ] {
        if value > MAX_MS {
            return Err((key, format!("{value} is more than {MAX_MS}")));
        }
    }
    if g.rss_sample_ms < MIN_SAMPLE_MS {
        return Err((
            "rss_sample_ms",
            format!("{} is less than {MIN_SAMPLE_MS}", g.rss_sample_ms),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::{error_of, parse_groups};

    #[test]
    fn recycling_keys_are_bounded_and_named_in_errors() {
        let year = crate::config::MAX_MS;
        for key in ["rss_sample_ms", "max_lifetime_ms", "lifetime_jitter_ms"] {
            let e = error_of(&format!(r#""{key}": {}"#, year + 1));
            assert!(e.contains(&format!("groups[0].{key}")), "{e}");
        }
        let e = error_of(r#""rss_sample_ms": 9"#);
        assert!(
            e.contains("groups[0].rss_sample_ms") && e.contains("less than 10"),
            "{e}"
        );
        let e = error_of(r#""reload_signal": "SIGFOO""#);
        assert!(e.contains("groups[0].reload_signal"), "{e}");
        let g = &parse_groups(
            r#"[{"name": "g", "argv": ["/bin/true"], "reload_signal": "SIGUSR2",
                 "max_rss_bytes": 1048576, "max_lifetime_ms": 60000, "lifetime_jitter_ms": 500}]"#,
        )
        .unwrap()[0];
        assert_eq!(g.reload_signal.number(), libc::SIGUSR2);
        assert_eq!((g.max_rss_bytes, g.rss_sample_ms), (1_048_576, 5_000));
        assert_eq!((g.max_lifetime_ms, g.lifetime_jitter_ms), (60_000, 500));
    }

    #[test]
    fn reload_signal_defaults_to_sighup() {
        let g = &parse_groups(r#"[{"name": "g", "argv": ["/bin/true"]}]"#).unwrap()[0];
        assert_eq!(g.reload_signal.number(), libc::SIGHUP);
        assert_eq!(g.reload_signal.name(), "SIGHUP");
    }
}

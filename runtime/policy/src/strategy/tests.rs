use super::*;

use Decision::{Accept, Drop, RetryAfterMs, Stop};

const RETRY_TRUE: &[u8] = br#"{"message":"boom","retry":true}"#;
const RETRY_FALSE: &[u8] = br#"{"message":"nope","retry":false}"#;

fn config(strategy: ExceptionStrategy, backoff: &str) -> StrategyConfig {
    StrategyConfig {
        strategy,
        backoff: BackoffSchedule::parse(backoff).unwrap(),
        ..StrategyConfig::default()
    }
}

fn response(status: u16, body: &[u8]) -> Outcome<'_> {
    Outcome::Response { status, body }
}

/// Every decision from attempt 1 until the first one that is not a retry.
fn run(config: &StrategyConfig, outcome: &Outcome<'_>) -> Vec<Decision> {
    let mut decisions = Vec::new();
    for attempt in 1..=100 {
        let decision = decide(config, outcome, attempt);
        let terminal = !matches!(decision, RetryAfterMs(_));
        decisions.push(decision);
        if terminal {
            break;
        }
    }
    decisions
}

fn retries(waits_ms: &[u64]) -> Vec<Decision> {
    waits_ms.iter().map(|&wait| RetryAfterMs(wait)).collect()
}

fn with_last(mut decisions: Vec<Decision>, last: Decision) -> Vec<Decision> {
    decisions.push(last);
    decisions
}

// --- Attempt sequences ---

#[test]
fn progressive_drop_retries_on_the_schedule_then_drops() {
    let config = StrategyConfig::default();
    assert_eq!(
        run(&config, &response(500, RETRY_TRUE)),
        with_last(
            retries(&[5_000, 30_000, 60_000, 300_000, 600_000]),
            Drop("HTTP 500 with retry=true; gave up after 6 attempts (PROGRESS_BACK_OFF_DROP_MESSAGE)".into()),
        )
    );
}

#[test]
fn progressive_stop_retries_on_the_schedule_then_stops() {
    let config = config(ExceptionStrategy::ProgressBackOffStopTask, "1,2.5");
    assert_eq!(
        run(&config, &response(500, RETRY_TRUE)),
        with_last(
            retries(&[1_000, 2_500]),
            Stop(
                "HTTP 500 with retry=true; stopped after 3 attempts (PROGRESS_BACK_OFF_STOP_TASK)"
                    .into()
            ),
        )
    );
}

#[test]
fn drop_message_drops_at_once() {
    let config = config(ExceptionStrategy::DropMessage, "5,30");
    assert_eq!(
        run(&config, &response(500, RETRY_TRUE)),
        [Drop(
            "HTTP 500 with retry=true; dropped after 1 attempt (DROP_MESSAGE)".into()
        )]
    );
}

#[test]
fn stop_task_stops_at_once() {
    let config = config(ExceptionStrategy::StopTask, "5,30");
    assert_eq!(
        run(&config, &response(404, b"not found")),
        [Stop(
            "HTTP 404 without a retry flag; stopped after 1 attempt (STOP_TASK)".into()
        )]
    );
}

#[test]
fn stop_class_uses_the_stop_schedule_whatever_the_strategy() {
    for strategy in ExceptionStrategy::ALL {
        let config = StrategyConfig {
            stop_backoff: Some(BackoffSchedule::parse("5,10,15").unwrap()),
            ..config(strategy, "1,1,1,1,1,1,1")
        };
        assert_eq!(
            run(&config, &response(503, b"Service Unavailable")),
            with_last(
                retries(&[5_000, 10_000, 15_000]),
                Stop("HTTP 503 without a retry flag; stopped after 4 attempts (status 503 stops the connector whatever exception.strategy says)".into()),
            ),
            "{strategy}"
        );
    }
}

#[test]
fn stop_class_falls_back_to_the_main_schedule() {
    let config = config(ExceptionStrategy::DropMessage, "2,4");
    assert_eq!(
        run(&config, &response(502, b"")),
        with_last(
            retries(&[2_000, 4_000]),
            Stop("HTTP 502 without a retry flag; stopped after 3 attempts (status 502 stops the connector whatever exception.strategy says)".into()),
        )
    );
}

#[test]
fn transport_errors_take_the_stop_path() {
    let config = StrategyConfig::default();
    assert_eq!(
        run(
            &config,
            &Outcome::Transport {
                description: "connection refused"
            }
        ),
        with_last(
            retries(&[5_000, 30_000, 60_000, 300_000, 600_000]),
            Stop("transport error: connection refused; stopped after 6 attempts".into()),
        )
    );
    let config = StrategyConfig {
        stop_backoff: Some(BackoffSchedule::parse("").unwrap()),
        ..config
    };
    assert_eq!(
        run(
            &config,
            &Outcome::Transport {
                description: "tls:\r\nbad certificate"
            }
        ),
        [Stop(
            "transport error: tls:  bad certificate; stopped after 1 attempt".into()
        )]
    );
}

#[test]
fn empty_schedule_gives_up_after_the_first_attempt() {
    let outcome = response(500, RETRY_TRUE);
    assert_eq!(
        run(
            &config(ExceptionStrategy::ProgressBackOffDropMessage, ""),
            &outcome
        ),
        [Drop(
            "HTTP 500 with retry=true; gave up after 1 attempt (PROGRESS_BACK_OFF_DROP_MESSAGE)"
                .into()
        )]
    );
    assert_eq!(
        run(
            &config(ExceptionStrategy::ProgressBackOffStopTask, ""),
            &outcome
        ),
        [Stop(
            "HTTP 500 with retry=true; stopped after 1 attempt (PROGRESS_BACK_OFF_STOP_TASK)"
                .into()
        )]
    );
    assert_eq!(
        run(&config(ExceptionStrategy::DropMessage, ""), &response(503, b"")),
        [Stop("HTTP 503 without a retry flag; stopped after 1 attempt (status 503 stops the connector whatever exception.strategy says)".into())]
    );
}

#[test]
fn zero_waits_retry_at_once() {
    let config = config(ExceptionStrategy::ProgressBackOffDropMessage, "0,0");
    assert_eq!(
        run(&config, &response(500, b"")),
        with_last(
            retries(&[0, 0]),
            Drop("HTTP 500 without a retry flag; gave up after 3 attempts (PROGRESS_BACK_OFF_DROP_MESSAGE)".into()),
        )
    );
}

#[test]
fn attempt_zero_is_taken_as_the_first() {
    let config = StrategyConfig::default();
    assert_eq!(
        decide(&config, &response(500, RETRY_TRUE), 0),
        RetryAfterMs(5_000)
    );
    let config = super::tests::config(ExceptionStrategy::StopTask, "");
    assert_eq!(
        decide(&config, &response(500, RETRY_TRUE), 0),
        Stop("HTTP 500 with retry=true; stopped after 1 attempt (STOP_TASK)".into())
    );
}

#[test]
fn reasons_never_include_the_body() {
    let body = br#"{"message":"secret-token-123","retry":true}"#;
    for strategy in ExceptionStrategy::ALL {
        for decision in run(&config(strategy, "1"), &response(500, body)) {
            if let Drop(reason) | Stop(reason) = decision {
                assert!(!reason.contains("secret"), "{reason}");
                assert!(!reason.contains('\n'), "{reason}");
            }
        }
    }
    for decision in run(&StrategyConfig::default(), &response(503, b"secret")) {
        if let Stop(reason) = decision {
            assert!(!reason.contains("secret"), "{reason}");
        }
    }
}

// --- Classification ---

#[test]
fn retry_false_is_success_whatever_the_status() {
    let config = config(ExceptionStrategy::StopTask, "");
    for status in [
        200, 201, 204, 301, 400, 404, 429, 500, 502, 503, 504, 401, 403, 405, 406,
    ] {
        assert_eq!(
            decide(&config, &response(status, RETRY_FALSE), 1),
            Accept,
            "{status}"
        );
        assert_eq!(
            decide(&config, &response(status, RETRY_FALSE), 7),
            Accept,
            "{status}"
        );
    }
}

#[test]
fn two_xx_without_a_flag_fails_unless_success_on_2xx() {
    let strict = config(ExceptionStrategy::DropMessage, "5");
    let lenient = StrategyConfig {
        success_on_2xx: true,
        ..strict.clone()
    };
    for status in [200, 201, 204, 299] {
        for body in [&b""[..], b"OK", br#"{"id":1}"#, br#"{"retry":null}"#] {
            assert_eq!(
                decide(&strict, &response(status, body), 1),
                Drop(format!(
                    "HTTP {status} without a retry flag; dropped after 1 attempt (DROP_MESSAGE)"
                )),
            );
            assert_eq!(decide(&lenient, &response(status, body), 1), Accept);
        }
    }
}

#[test]
fn two_xx_with_retry_true_takes_the_strategy_path_even_with_success_on_2xx() {
    for success_on_2xx in [false, true] {
        let config = StrategyConfig {
            success_on_2xx,
            ..StrategyConfig::default()
        };
        for status in [200, 201, 204] {
            assert_eq!(
                run(&config, &response(status, RETRY_TRUE)),
                with_last(
                    retries(&[5_000, 30_000, 60_000, 300_000, 600_000]),
                    Drop(format!(
                        "HTTP {status} with retry=true; gave up after 6 attempts (PROGRESS_BACK_OFF_DROP_MESSAGE)"
                    )),
                )
            );
        }
    }
}

#[test]
fn non_2xx_without_a_flag_is_not_helped_by_success_on_2xx() {
    let config = StrategyConfig {
        success_on_2xx: true,
        ..config(ExceptionStrategy::DropMessage, "")
    };
    for status in [100, 199, 300, 301, 302, 304, 307, 400, 404, 409, 429, 500] {
        assert_eq!(
            decide(&config, &response(status, b""), 1),
            Drop(format!(
                "HTTP {status} without a retry flag; dropped after 1 attempt (DROP_MESSAGE)"
            )),
        );
    }
}

#[test]
fn three_xx_without_a_flag_takes_the_strategy_path() {
    let config = config(ExceptionStrategy::ProgressBackOffStopTask, "3");
    assert_eq!(
        run(&config, &response(302, b"<a href=...>moved</a>")),
        [
            RetryAfterMs(3_000),
            Stop("HTTP 302 without a retry flag; stopped after 2 attempts (PROGRESS_BACK_OFF_STOP_TASK)".into()),
        ]
    );
}

#[test]
fn each_stop_status_with_and_without_a_flag() {
    let config = StrategyConfig {
        stop_backoff: Some(BackoffSchedule::parse("7").unwrap()),
        ..config(ExceptionStrategy::DropMessage, "1,2")
    };
    for status in STOP_STATUSES {
        // Without a flag (or with an unusable one): the stop class.
        for body in [
            &b""[..],
            b"Bad Gateway",
            br#"{"retry":null}"#,
            br#"{"retry":true"#,
        ] {
            assert_eq!(
                run(&config, &response(status, body)),
                [
                    RetryAfterMs(7_000),
                    Stop(format!(
                        "HTTP {status} without a retry flag; stopped after 2 attempts (status {status} stops the connector whatever exception.strategy says)"
                    )),
                ]
            );
        }
        // retry=false: success.
        assert_eq!(decide(&config, &response(status, RETRY_FALSE), 1), Accept);
        // retry=true: the configured strategy.
        assert_eq!(
            run(&config, &response(status, RETRY_TRUE)),
            [Drop(format!(
                "HTTP {status} with retry=true; dropped after 1 attempt (DROP_MESSAGE)"
            ))]
        );
    }
}

#[test]
fn statuses_near_the_stop_list_take_the_strategy_path() {
    let config = config(ExceptionStrategy::DropMessage, "");
    for status in [400, 402, 404, 407, 500, 501, 505] {
        assert_eq!(
            decide(&config, &response(status, b""), 1),
            Drop(format!(
                "HTTP {status} without a retry flag; dropped after 1 attempt (DROP_MESSAGE)"
            ))
        );
    }
}

// --- Strategy names ---

#[test]
fn strategy_names_round_trip() {
    for strategy in ExceptionStrategy::ALL {
        assert_eq!(strategy.as_str().parse::<ExceptionStrategy>(), Ok(strategy));
        assert_eq!(strategy.to_string(), strategy.as_str());
    }
    assert_eq!(
        ExceptionStrategy::default(),
        ExceptionStrategy::ProgressBackOffDropMessage
    );
}

#[test]
fn strategy_names_are_trimmed_and_case_insensitive() {
    assert_eq!(
        "  progress_back_off_stop_task\t".parse(),
        Ok(ExceptionStrategy::ProgressBackOffStopTask)
    );
    assert_eq!("Drop_Message".parse(), Ok(ExceptionStrategy::DropMessage));
    assert_eq!("stop_task".parse(), Ok(ExceptionStrategy::StopTask));
}

#[test]
fn unknown_strategy_lists_the_valid_values() {
    for text in [
        "",
        "DROP",
        "STOP-TASK",
        "PROGRESS_BACK_OFF",
        "DEAD_LETTER_QUEUE",
    ] {
        let error = text.parse::<ExceptionStrategy>().unwrap_err();
        assert_eq!(error.value, text);
        let message = error.to_string();
        for strategy in ExceptionStrategy::ALL {
            assert!(message.contains(strategy.as_str()), "{message}");
        }
    }
}

// --- Configuration ---

#[test]
fn defaults_when_no_key_is_given() {
    let config = StrategyConfig::from_pairs([("callback.request.url", "http://x")]).unwrap();
    assert_eq!(config, StrategyConfig::default());
    assert_eq!(
        config.strategy,
        ExceptionStrategy::ProgressBackOffDropMessage
    );
    assert_eq!(config.backoff.to_string(), "5,30,60,300,600");
    assert_eq!(config.stop_backoff, None);
    assert!(!config.success_on_2xx);
}

#[test]
fn reads_all_four_keys() {
    let config = StrategyConfig::from_pairs([
        ("exception.strategy", " stop_task "),
        ("retry.backoff.sec", "1, 2,0.5"),
        ("request.retry.backoff.sec", "5,10,15"),
        ("callback.success.on.2xx", " TRUE "),
        ("topics", "a,b"),
    ])
    .unwrap();
    assert_eq!(
        config,
        StrategyConfig {
            strategy: ExceptionStrategy::StopTask,
            backoff: BackoffSchedule::from_waits_ms(vec![1_000, 2_000, 500]),
            stop_backoff: Some(BackoffSchedule::from_waits_ms(vec![5_000, 10_000, 15_000])),
            success_on_2xx: true,
        }
    );
}

#[test]
fn empty_lists_are_empty_schedules() {
    let config = StrategyConfig::from_pairs([
        ("retry.backoff.sec", ""),
        ("request.retry.backoff.sec", " "),
    ])
    .unwrap();
    assert!(config.backoff.is_empty());
    assert_eq!(
        config.stop_backoff,
        Some(BackoffSchedule::from_waits_ms(Vec::new()))
    );
}

#[test]
fn booleans_are_strict() {
    for (text, expected) in [("true", true), ("False", false), (" FALSE ", false)] {
        let config = StrategyConfig::from_pairs([("callback.success.on.2xx", text)]).unwrap();
        assert_eq!(config.success_on_2xx, expected);
    }
    for text in ["", "yes", "1", "on", "t"] {
        let errors = StrategyConfig::from_pairs([("callback.success.on.2xx", text)]).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].key, KEY_SUCCESS_ON_2XX);
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let errors = StrategyConfig::from_pairs([
        ("exception.strategy", "RETRY_FOREVER"),
        ("retry.backoff.sec", "5, 30,,60"),
        ("request.retry.backoff.sec", "5,-10"),
        ("callback.success.on.2xx", "maybe"),
    ])
    .unwrap_err();
    let keys: Vec<_> = errors.iter().map(|error| error.key).collect();
    assert_eq!(
        keys,
        [
            KEY_EXCEPTION_STRATEGY,
            KEY_RETRY_BACKOFF,
            KEY_STOP_BACKOFF,
            KEY_SUCCESS_ON_2XX
        ]
    );
    let messages: Vec<_> = errors.iter().map(ToString::to_string).collect();
    assert!(
        messages[0].starts_with("exception.strategy: "),
        "{}",
        messages[0]
    );
    assert!(messages[0].contains("RETRY_FOREVER"), "{}", messages[0]);
    assert!(
        messages[1].contains("element 3 is empty"),
        "{}",
        messages[1]
    );
    assert!(
        messages[2].contains("element 2") && messages[2].contains("\"-10\""),
        "{}",
        messages[2]
    );
    assert!(messages[3].contains("\"maybe\""), "{}", messages[3]);
}

#[test]
fn last_occurrence_of_a_key_wins() {
    let config = StrategyConfig::from_pairs([
        ("exception.strategy", "nonsense"),
        ("exception.strategy", "DROP_MESSAGE"),
    ])
    .unwrap();
    assert_eq!(config.strategy, ExceptionStrategy::DropMessage);
}

#[test]
fn keys_match_exactly() {
    let config = StrategyConfig::from_pairs([
        ("Exception.Strategy", "nonsense"),
        (" retry.backoff.sec", "nonsense"),
    ])
    .unwrap();
    assert_eq!(config, StrategyConfig::default());
}

#[test]
fn to_pairs_round_trips() {
    let configs = [
        StrategyConfig::default(),
        StrategyConfig {
            strategy: ExceptionStrategy::ProgressBackOffStopTask,
            backoff: BackoffSchedule::from_waits_ms(vec![200, 1_500, 0]),
            stop_backoff: Some(BackoffSchedule::from_waits_ms(Vec::new())),
            success_on_2xx: true,
        },
    ];
    for config in configs {
        let pairs = config.to_pairs();
        let borrowed = pairs.iter().map(|(key, value)| (*key, value.as_str()));
        assert_eq!(StrategyConfig::from_pairs(borrowed), Ok(config));
    }
    assert_eq!(
        StrategyConfig::default().to_pairs(),
        [
            (
                KEY_EXCEPTION_STRATEGY,
                "PROGRESS_BACK_OFF_DROP_MESSAGE".to_owned()
            ),
            (KEY_RETRY_BACKOFF, "5,30,60,300,600".to_owned()),
            (KEY_SUCCESS_ON_2XX, "false".to_owned()),
        ]
    );
}

use super::*;

use RetryFlag::{Absent, NoRetry, Retry};

#[track_caller]
fn check(body: &str, expected: RetryFlag) {
    assert_eq!(
        parse_retry_flag(body.as_bytes()),
        expected,
        "body: {body:?}"
    );
}

#[track_caller]
fn check_value(value: &str, expected: RetryFlag) {
    check(&format!(r#"{{"retry":{value}}}"#), expected);
}

// --- The research note's table (seed-connector.md §3.3) ---

#[test]
fn values_that_mean_retry() {
    for value in ["true", r#""true""#, r#""TRUE""#, "True", "[true]"] {
        check_value(value, Retry);
    }
}

#[test]
fn values_that_mean_no_retry() {
    for value in ["false", r#""false""#, r#""yes""#, "1", "0", "1.0", "tru"] {
        check_value(value, NoRetry);
    }
}

#[test]
fn values_that_are_no_usable_flag() {
    for value in ["null", "{}", "[]"] {
        check_value(value, Absent);
    }
}

#[test]
fn missing_or_misspelled_key_is_absent() {
    check(r#"{"message":"x"}"#, Absent);
    check(r#"{"Retry":true}"#, Absent);
    check(r#"{"RETRY":false}"#, Absent);
    check(r#"{"retry ":false}"#, Absent);
    check("{}", Absent);
}

#[test]
fn bodies_that_are_not_a_json_object_are_absent() {
    for body in [
        "",
        "   ",
        "\r\n",
        " \t \r\n ",
        "error",
        "Internal Server Error",
        r#"[{"retry":false}]"#,
        r#""{\"retry\":false}""#,
        "null",
        "true",
        "false",
        "42",
        "<html><body>502 Bad Gateway</body></html>",
    ] {
        check(body, Absent);
    }
}

#[test]
fn trailing_garbage_is_absent() {
    for body in [
        r#"{"retry":false}x"#,
        r#"{"retry":false}{"retry":false}"#,
        r#"{"retry":false} {"retry":false}"#,
        r#"{"retry":false};"#,
        r#"{"retry":false}#done"#,
        r#"{"retry":false}// done"#,
        r#"{"retry":false}/* done */"#,
        r#"{"retry":false},"#,
        r#"{"retry":false}}"#,
        r#"{"retry":false}]"#,
        "{\"retry\":false}\u{c}",
    ] {
        check(body, Absent);
    }
}

#[test]
fn trailing_whitespace_is_fine() {
    check("{\"retry\":false}  \t ", NoRetry);
    check("{\"retry\":false}\r\n", NoRetry);
    check("{\"retry\":false}\n\n  \n", NoRetry);
}

#[test]
fn trailing_comma_is_absent() {
    check(r#"{"retry":false,}"#, Absent);
    check(r#"{"retry":false;}"#, Absent);
    check(r#"{,"retry":false}"#, Absent);
    check(r#"{"retry":false,,"a":1}"#, Absent);
}

#[test]
fn truncated_json_is_absent() {
    let full = r#"{"message":"Unable to process","retry":false,"data":{"a":[1,2,{"b":"c"}]}}"#;
    for end in 0..full.len() {
        check(&full[..end], Absent);
    }
    check(full, NoRetry);
}

#[test]
fn duplicate_keys_last_wins() {
    check(r#"{"retry":true,"retry":false}"#, NoRetry);
    check(r#"{"retry":false,"retry":true}"#, Retry);
    check(r#"{"retry":false,"retry":null}"#, Absent);
    check(r#"{"retry":null,"retry":"TRUE"}"#, Retry);
}

#[test]
fn multi_line_bodies_are_joined() {
    check("{\n  \"message\": \"x\",\n  \"retry\": true\n}\n", Retry);
    check("{\r\n  \"retry\": false\r\n}\r\n", NoRetry);
    check("{\r  \"retry\": false\r}", NoRetry);
    // Lines are joined without a separator, so tokens split across lines
    // are glued back together.
    check("{\"retry\":tr\nue}", Retry);
    check("{\"re\r\ntry\":false}", NoRetry);
    check("{\"retry\":\"fal\nse\"}", NoRetry);
    check("{\"retry\":\"\\u00\n74rue\"}", Retry);
    check("{\"retry\"=\n>true}", Retry);
    check("{\"a\":1/\n/ comment\n,\"retry\":true}", Absent);
}

// --- The reference's unit tests (seed-connector.md §7.2, ApiRequestTest) ---

#[test]
fn api_request_test_cases() {
    // (d) truncated JSON body -> response error (no usable flag).
    check(r#"{"message":"Unable to process","retry":tr"#, Absent);
    check(r#"{"retry":true"#, Absent);
    // (e) text body `error` -> response error.
    check("error", Absent);
    // (f), (g) {"retry":true} -> response error.
    check(r#"{"retry":true}"#, Retry);
    // (h), (i) {"retry":false} -> no error.
    check(r#"{"retry":false}"#, NoRetry);
}

// --- The seed's sample responses ---

#[test]
fn seed_samples() {
    check(
        "{\n\"message\":\"Unable to process. An error happened: Identity - User with ID=test not found\",\n\"retry\":false\n}",
        NoRetry,
    );
    check(
        "{\n\"message\":\"Unable to process. An unhandled exception has been thrown.\",\n\"retry\":true\n}",
        Retry,
    );
    check(
        r#"{"message":"Unable to process. An unhandled exception has been thrown.","retry":true}"#,
        Retry,
    );
}

// --- Conversion (Gson getAsBoolean) ---

#[test]
fn strings_and_numbers_convert_by_their_text() {
    for value in [r#""True""#, r#""tRuE""#, "'true'", "TRUE", "tRuE"] {
        check_value(value, Retry);
    }
    for value in [
        r#""""#,
        r#"" true""#,
        r#""true ""#,
        r#""t""#,
        r#""truee""#,
        r#""1""#,
        r#""on""#,
        "-1",
        "1e5",
        "-0",
        "0.0",
        "1abc",
        "yes",
        "truex",
        "true\"",
        "FALSE",
        "False",
        "NaN",
        "Infinity",
    ] {
        check_value(value, NoRetry);
    }
}

#[test]
fn keywords_match_per_character_in_either_case() {
    check_value("TrUe", Retry);
    check_value("NULL", Absent);
    check_value("nUlL", Absent);
    check_value("nul", NoRetry);
    check_value("nulls", NoRetry);
}

#[test]
fn single_element_arrays_convert_their_element() {
    check_value("[true]", Retry);
    check_value("[[true]]", Retry);
    check_value("[[[\"TRUE\"]]]", Retry);
    check_value("[false]", NoRetry);
    check_value("[1]", NoRetry);
    check_value("[\"yes\"]", NoRetry);
    check_value("[null]", Absent);
    check_value("[{}]", Absent);
    check_value("[[]]", Absent);
    check_value("[true,true]", Absent);
    check_value("[[true],1]", Absent);
    check_value("[[true,1]]", Absent);
    // Lenient empty elements are nulls.
    check_value("[true,]", Absent);
    check_value("[,true]", Absent);
    check_value("[,]", Absent);
    check_value("[;]", Absent);
}

#[test]
fn objects_are_absent_even_with_a_retry_inside() {
    check_value(r#"{"retry":true}"#, Absent);
    check_value(r#"[{"retry":true}]"#, Absent);
    check(r#"{"data":{"retry":true}}"#, Absent);
}

// --- Lenient syntax ---

#[test]
fn other_members_may_hold_anything() {
    check(
        r#"{"a":{"b":[1,2,{"c":null}],"d":{}},"e":[[],[[]]],"retry":true,"f":"x"}"#,
        Retry,
    );
    check(r#"{"a":[1,,2],"retry":false,"b":[,]}"#, NoRetry);
    check(r#"{"a":[1;2;3],"retry":false}"#, NoRetry);
    check(
        r#"{"a":1e-5,"b":-0.5,"c":12345678901234567890123,"retry":true}"#,
        Retry,
    );
    check(r#"{"a":"}]{[\"","retry":true}"#, Retry);
}

#[test]
fn escapes_are_decoded() {
    check_value(r#""\u0074rue""#, Retry);
    check_value(r#""\u0054\u0052\u0055\u0045""#, Retry);
    check_value(r#""tru\u0065""#, Retry);
    check_value(r#""\u0074\u0072\u0075\u0065""#, Retry);
    check_value(r#""\u0066alse""#, NoRetry);
    check_value(r#""\ttrue""#, NoRetry);
    check(r#"{"\u0072etry":true}"#, Retry);
    check(r#"{"retr\u0079":false}"#, NoRetry);
    check(r#"{"retry\u0000":true}"#, Absent);
    check(r#"{"a":"\"\\\/\b\f\n\r\t\u00e9\'","retry":true}"#, Retry);
    check(r#"{'a':'it\'s \"x\"','retry':true}"#, Retry);
}

#[test]
fn invalid_escapes_are_errors() {
    // Gson has rejected unknown escapes since 2.7.
    check(r#"{"a":"\x","retry":true}"#, Absent);
    check(r#"{"a":"\a","retry":false}"#, Absent);
    check(r#"{"a":"\u12G4","retry":false}"#, Absent);
    check(r#"{"a":"\u12","retry":false}"#, Absent);
    check(r#"{"retry":"\"#, Absent);
}

#[test]
fn single_quotes_and_unquoted_names_and_values() {
    check("{'retry':true}", Retry);
    check("{'retry':'true'}", Retry);
    check("{'retry':'no'}", NoRetry);
    check("{retry:true}", Retry);
    check("{retry:TRUE}", Retry);
    check("{message:hello,retry:false}", NoRetry);
    check("{retry:some text}", Absent);
    check("{'retry\":true}", Absent);
    check(r#"{"retry':true}"#, Absent);
}

#[test]
fn alternative_separators() {
    check(r#"{"retry"=true}"#, Retry);
    check(r#"{"retry"=>true}"#, Retry);
    check(r#"{"retry" => true}"#, Retry);
    check(r#"{"retry"= >true}"#, NoRetry);
    check(r#"{"a":1;"retry":true}"#, Retry);
    check(r#"{"a"=>1;"retry"=false;}"#, Absent);
    check(r#"{"retry"::true}"#, Absent);
    check(r#"{"retry"}"#, Absent);
    check(r#"{"retry" true}"#, Absent);
}

#[test]
fn comments() {
    check(r#"/* lead */{"retry":true}"#, Retry);
    check(r#"{/* a */"retry"/* b */:/* c */true/* d */}"#, Retry);
    check(r#"{"retry":true/**/}"#, Retry);
    check(r#"{"retry":true/*/}"#, Absent);
    check(r#"{"retry":true /* unterminated"#, Absent);
    // Line comments run to the end of the body, since newlines are removed.
    check("{\"retry\":true // why\n}", Absent);
    check("{\"retry\":true # why\n}", Absent);
    check("# comment\n{\"retry\":true}", Absent);
    check("// comment\n{\"retry\":true}", Absent);
    check("{\"retry\":true/}", Absent);
}

#[test]
fn only_space_and_tab_are_whitespace() {
    check("{ \t\"retry\" \t: \ttrue\t }", Retry);
    check("{\u{c}\"retry\":true}", Absent);
    check("{\"retry\":\u{b}true}", NoRetry);
    check("\u{c}{\"retry\":true}", Absent);
}

#[test]
fn byte_order_mark_is_skipped_once() {
    check("\u{feff}{\"retry\":true}", Retry);
    check("\r\n\u{feff}{\"retry\":true}", Retry);
    check("\u{feff}\u{feff}{\"retry\":true}", Absent);
    check(" \u{feff}{\"retry\":true}", Absent);
    assert_eq!(parse_retry_flag(b"\xEF\n\xBB\xBF{\"retry\":true}"), Absent);
}

#[test]
fn non_execute_prefix_never_matches_once_newlines_are_removed() {
    // Gson skips `)]}'` + newline; the reference has removed the newline.
    check(")]}'\n{\"retry\":true}", Absent);
    check(")]}'{\"retry\":true}", Absent);
}

#[test]
fn non_ascii_and_invalid_utf8_are_plain_characters() {
    check(r#"{"message":"Ünïcödé ✓ 😀","retry":true}"#, Retry);
    check(r#"{"retry":"trué"}"#, NoRetry);
    check(r#"{"rétry":true}"#, Absent);
    assert_eq!(
        parse_retry_flag(b"{\"m\":\"\xff\xfe\xc3\",\"retry\":true}"),
        Retry
    );
    assert_eq!(parse_retry_flag(b"{\"retry\":tr\xffue}"), NoRetry);
    assert_eq!(parse_retry_flag(b"{\xff:1,\"retry\":true}"), Retry);
}

#[test]
fn nesting_is_capped() {
    let nested = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    check(
        &format!(r#"{{"a":{},"retry":true}}"#, nested(MAX_DEPTH - 1)),
        Retry,
    );
    check(
        &format!(r#"{{"a":{},"retry":true}}"#, nested(MAX_DEPTH)),
        Absent,
    );
    check(&format!(r#"{{"retry":{}}}"#, nested(100_000)), Absent);
    let deep_true = format!("{}true{}", "[".repeat(300), "]".repeat(300));
    check_value(&deep_true, Retry);
    let deep_objects = format!("{}{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
    check(&deep_objects, Absent);
}

#[test]
fn unterminated_values_are_absent() {
    for body in [
        r#"{"retry":"true}"#,
        r#"{"retry":'true}"#,
        r#"{"retry":[true}"#,
        r#"{"retry":{"a":1}"#,
        r#"{"retry":true,"#,
        r#"{"retry":"#,
        r#"{"retry""#,
        "{",
        r#"{"a":[1,2"#,
    ] {
        check(body, Absent);
    }
}

#[test]
fn misplaced_tokens_are_absent() {
    for body in [
        r#"{"retry":}"#,
        r#"{"retry":]}"#,
        r#"{"retry":,}"#,
        r#"{"retry":;}"#,
        r#"{"retry"::}"#,
        r#"{"retry":=true}"#,
        r#"{"retry":\true}"#,
        "{:true}",
        r#"{"a":[}],"retry":true}"#,
        r#"{"a":[1 2],"retry":true}"#,
        r#"{"a":1 "b":2,"retry":true}"#,
        r#"{"retry":true]"#,
        r#"{"a":[1}"#,
    ] {
        check(body, Absent);
    }
}

/// A tiny deterministic generator (no dev-dependencies).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, bound: usize) -> usize {
        usize::try_from(self.next()).unwrap_or(0) % bound
    }
}

#[test]
fn random_bytes_never_panic() {
    const PIECES: [&[u8]; 40] = [
        b"{",
        b"}",
        b"[",
        b"]",
        b":",
        b",",
        b";",
        b"=",
        b"=>",
        b"\"",
        b"'",
        b"\\",
        b"\\u",
        b"\\u0074",
        b"retry",
        b"\"retry\"",
        b"true",
        b"TRUE",
        b"false",
        b"null",
        b"1",
        b"-0.5e3",
        b" ",
        b"\t",
        b"\r\n",
        b"\n",
        b"/*",
        b"*/",
        b"//",
        b"#",
        b"\xEF\xBB\xBF",
        b")]}'",
        b"x",
        b"\xff",
        b"\xc3\xa9",
        b"\x0c",
        b"\"a\":",
        b"[,",
        b"\\\"",
        b"\x00",
    ];
    let mut rng = Lcg(0x5eed);
    let mut seen = [0_usize; 3];
    let mut body = Vec::new();
    for round in 0..6_000 {
        body.clear();
        if round % 3 == 0 {
            // Raw bytes.
            for _ in 0..rng.below(64) {
                body.push(u8::try_from(rng.next() & 0xff).unwrap_or(0));
            }
        } else {
            // JSON-ish pieces, usually inside an object.
            if round % 3 == 1 {
                body.extend_from_slice(b"{\"retry\":");
            }
            for _ in 0..rng.below(24) {
                body.extend_from_slice(PIECES[rng.below(PIECES.len())]);
            }
        }
        let flag = parse_retry_flag(&body);
        assert_eq!(parse_retry_flag(&body), flag);
        seen[flag as usize] += 1;
    }
    // The generator reaches every outcome, so the loop exercises real paths.
    assert!(seen.iter().all(|&count| count > 0), "{seen:?}");
}

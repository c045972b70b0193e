use super::*;

fn pairs(text: &str) -> Vec<(String, String)> {
    parse(text).unwrap_or_else(|e| panic!("{text:?}: {e:?}"))
}

fn one(text: &str) -> String {
    let p = pairs(text);
    assert_eq!(p.len(), 1, "{text:?}: {p:?}");
    p[0].1.clone()
}

#[test]
fn plain_assignments_with_blanks_around_key_and_value() {
    assert_eq!(
        pairs("A=1\n  B = two words  \nC=\n"),
        vec![
            ("A".into(), "1".into()),
            ("B".into(), "two words".into()),
            ("C".into(), String::new())
        ]
    );
    // The last line needs no newline.
    assert_eq!(pairs("A=1"), vec![("A".into(), "1".into())]);
    assert_eq!(one("A=x=y"), "x=y");
}

#[test]
fn comments_and_blank_lines_are_skipped() {
    let text = "# a comment\n; another\n\n   # indented\nA=1 # not a comment\n";
    assert_eq!(pairs(text), vec![("A".into(), "1 # not a comment".into())]);
    // A comment ending in a backslash does not swallow the next line (systemd 254 and later).
    assert_eq!(
        pairs("# comment \\\nB=shown\n"),
        vec![("B".into(), "shown".into())]
    );
}

#[test]
fn single_quotes_are_literal_and_keep_blanks_and_newlines() {
    assert_eq!(one("A='  a \\n \"b\" $x  '"), "  a \\n \"b\" $x  ");
    assert_eq!(one("A='line1\nline2'"), "line1\nline2");
}

#[test]
fn double_quotes_escape_only_what_the_shell_needs() {
    assert_eq!(one(r#"A=" \"q\" \\ \$ \` \n ""#), r#" "q" \ $ ` \n "#);
    assert_eq!(one("A=\"one\\\ntwo\""), "onetwo");
    assert_eq!(one("A=\"kept\nnewline\""), "kept\nnewline");
}

#[test]
fn quoted_and_unquoted_parts_join() {
    assert_eq!(one(r#"A="a b"c"#), "a bc");
    assert_eq!(one(r#"A='a'"b""#), "ab");
}

#[test]
fn unquoted_backslashes_escape_and_join_lines() {
    assert_eq!(one(r"A=a\ b\\c\#"), r"a b\c#");
    assert_eq!(one("A=first \\\nsecond\n"), "first second");
    // An escaped trailing blank is kept; unescaped ones are not.
    assert_eq!(one("A=x\\  \n"), "x ");
}

#[test]
fn export_prefix_is_dropped() {
    assert_eq!(
        pairs("export A=1\nexport\tB=2\nexported=3\n"),
        vec![
            ("A".into(), "1".into()),
            ("B".into(), "2".into()),
            ("exported".into(), "3".into())
        ]
    );
}

#[test]
fn invalid_lines_are_errors_naming_their_line() {
    assert_eq!(
        parse("A=1\nno equals sign\n"),
        Err(ParseError {
            line: 2,
            why: "no '=' in the line"
        })
    );
    assert_eq!(parse("A=1\n\n1X=2").unwrap_err().line, 3);
    assert_eq!(parse("A B=2").unwrap_err().line, 1);
    assert_eq!(parse("=2").unwrap_err().line, 1);
    assert_eq!(
        parse("A=1\nB=\"open\n").unwrap_err(),
        ParseError {
            line: 2,
            why: "unterminated quote"
        }
    );
    assert_eq!(parse("A='open").unwrap_err().why, "unterminated quote");
    assert_eq!(parse("KEY").unwrap_err().line, 1);
}

#[test]
fn reading_a_missing_file_fails_unless_optional() {
    let path = std::env::temp_dir().join(format!("mpsup-no-such-env-{}", std::process::id()));
    let entry = path.to_str().unwrap().to_string();
    let err = read(&entry).unwrap_err();
    assert!(err.to_string().contains(&entry), "{err}");
    assert_eq!(read(&format!("-{entry}")).unwrap(), vec![]);
}

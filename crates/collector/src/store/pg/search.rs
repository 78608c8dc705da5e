//! Event search on PostgreSQL: the same tokens SQLite's FTS5 index makes.
//!
//! SQLite's `events_fts` (migration 7) indexes each event's summary and its raw record's leaf
//! values, never its keys, with FTS5's `unicode61` tokenizer: a token is a run of letters and
//! digits, case-folded. PostgreSQL's own parser would split `CVE-2024-1234` into `cve`,
//! `-2024`, `-1234` (signed numbers), so a search for `2024` would miss it. The store therefore
//! tokenizes in Rust, on both sides: [`document`] is what `events.search` is built from
//! (`to_tsvector('simple', …)` of tokens joined by spaces), and [`query`] turns the user's
//! words into a `tsquery` of phrases, one per word, all required — FTS5's `"w1" "w2"`.

use serde_json::Value;

/// At most this many characters of text are indexed per event (a tsvector holds up to 1 MB).
const MAX_TEXT: usize = 200_000;

/// `unicode61`'s tokens of `s`, case-folded.
fn tokens(s: &str, out: &mut Vec<String>) {
    let mut cur = String::new();
    for ch in s.chars() {
        if ch.is_alphanumeric() {
            cur.extend(ch.to_lowercase());
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
}

fn leaves(v: &Value, out: &mut Vec<String>, budget: &mut usize) {
    if *budget == 0 {
        return;
    }
    match v {
        Value::String(s) => {
            *budget = budget.saturating_sub(s.len());
            tokens(s, out);
        }
        Value::Number(n) => tokens(&n.to_string(), out),
        Value::Bool(b) => out.push(if *b { "1" } else { "0" }.into()),
        Value::Array(a) => a.iter().for_each(|x| leaves(x, out, budget)),
        Value::Object(o) => o.values().for_each(|x| leaves(x, out, budget)),
        Value::Null => {}
    }
}

/// The text `events.search` indexes: the summary's tokens, then the record's leaf values'
/// (the whole text when the record is not JSON).
pub(crate) fn document(summary: &str, raw: &str) -> String {
    let mut out = Vec::new();
    tokens(summary, &mut out);
    let mut budget = MAX_TEXT;
    match serde_json::from_str::<Value>(raw) {
        Ok(v) => leaves(&v, &mut out, &mut budget),
        Err(_) => tokens(&raw[..raw.floor_char_boundary(MAX_TEXT)], &mut out),
    }
    out.join(" ")
}

/// The user's search as a `tsquery` (for `to_tsquery('simple', …)`): each word a phrase of
/// its tokens, all of them required. `None` when there is nothing to search for. Tokens are
/// letters and digits only, so nothing the user types is `tsquery` syntax.
pub(crate) fn query(q: &str) -> Option<String> {
    let mut phrases = Vec::new();
    for word in q.split(|c: char| c.is_whitespace() || c.is_control()) {
        let mut t = Vec::new();
        tokens(word, &mut t);
        if t.is_empty() {
            continue;
        }
        phrases.push(
            t.iter()
                .map(|x| format!("'{x}'"))
                .collect::<Vec<_>>()
                .join(" <-> "),
        );
    }
    (!phrases.is_empty()).then(|| phrases.join(" & "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_not_keys_and_words_split_like_unicode61() {
        let d = document(
            "Vulnerability CVE-2024-1234 detected",
            r#"{"blueprint_name":"Engineering Macs","n":5,"ok":true,"x":null,"l":["a.b"]}"#,
        );
        assert_eq!(
            d,
            "vulnerability cve 2024 1234 detected engineering macs a b 5 1"
        );
        assert!(!d.contains("blueprint"));
        assert_eq!(document("s", "{not json"), "s not json");
    }

    #[test]
    fn queries_are_phrases_of_tokens_and_never_syntax() {
        assert_eq!(
            query("CVE-2024-1234 macs").as_deref(),
            Some("'cve' <-> '2024' <-> '1234' & 'macs'")
        );
        assert_eq!(
            query("'); drop table events; --").as_deref(),
            Some("'drop' & 'table' & 'events'")
        );
        assert_eq!(query(" \0 !!! "), None);
    }
}

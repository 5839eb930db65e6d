//! HTML text escaping, for every page drctl writes (drill reports, the
//! status page, customer pages): pure, so every crate that renders HTML
//! shares the one rule.

/// Escapes text for HTML (every user- or system-supplied string goes through it).
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_markup() {
        assert_eq!(super::esc("<script>&\"'"), "&lt;script&gt;&amp;&quot;&#39;");
    }
}

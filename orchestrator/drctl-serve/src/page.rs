//! The public status page: server-rendered HTML, no JavaScript, one
//! stylesheet, light and dark, English and Japanese. Every text that comes
//! from users or systems is escaped. Rendered once per snapshot per
//! language; a request only picks the bytes.

use crate::view::{ServiceView, State, View};
use drctl_state::controller::Incident;
use std::fmt::Write as _;
use std::time::SystemTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Ja,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Ja];

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ja => "ja",
        }
    }

    /// `?lang=` first, then the first supported language in Accept-Language.
    pub fn pick(query: Option<&str>, accept: Option<&str>) -> Lang {
        let parse = |s: &str| match s.trim().to_ascii_lowercase().get(..2) {
            Some("ja") => Some(Lang::Ja),
            Some("en") => Some(Lang::En),
            _ => None,
        };
        if let Some(l) = query.and_then(parse) {
            return l;
        }
        let mut langs: Vec<(f32, Lang)> = accept
            .unwrap_or("")
            .split(',')
            .filter_map(|part| {
                let mut it = part.split(';');
                let lang = parse(it.next()?)?;
                let q = it.find_map(|p| p.trim().strip_prefix("q=")?.parse().ok()).unwrap_or(1.0);
                Some((q, lang))
            })
            .collect();
        langs.sort_by(|a, b| b.0.total_cmp(&a.0));
        langs.first().map_or(Lang::En, |l| l.1)
    }
}

/// The page's words.
struct Words {
    title: &'static str,
    overall: [&'static str; 5],
    states: [&'static str; 5],
    active_incidents: &'static str,
    past_incidents: &'static str,
    no_past_incidents: &'static str,
    maintenance: &'static str,
    services: &'static str,
    datastores: &'static str,
    live_rpo: &'static str,
    rto_estimate: &'static str,
    target: &'static str,
    last_drill: &'static str,
    no_drill: &'static str,
    last_restore: &'static str,
    no_restore: &'static str,
    /// Before the restore's duration: "restore 42 s".
    restore_took: &'static str,
    /// Before the recovery-point error: "3 s short of the point asked for".
    restore_short: &'static str,
    passed: &'static str,
    failed: &'static str,
    /// `{n}`: the days measured.
    uptime: &'static str,
    /// `{p}`: the share of that time the controller was not sampling.
    uptime_unknown: &'static str,
    why_down: &'static str,
    why_down_failing_over: &'static str,
    why_failing_over: &'static str,
    why_maintenance: &'static str,
    why_incident: &'static str,
    /// `{rpo}`, `{target}`.
    why_rpo_over: &'static str,
    why_rpo_unknown: &'static str,
    /// `{rto}`, `{target}`.
    why_rto_over: &'static str,
    no_data: &'static str,
    partial_data: &'static str,
    measured: &'static str,
    not_measured: &'static str,
    statuses: [&'static str; 4],
    lost_writes: &'static str,
    from: &'static str,
    until: &'static str,
    failing_over: &'static str,
    other_tier: &'static str,
    explain: &'static str,
    language: &'static str,
    unknown: &'static str,
    unknown_why: &'static str,
    affects: &'static str,
    split_brain: &'static str,
    subscribe: &'static str,
    subscribe_explain: &'static str,
    email: &'static str,
    every_service: &'static str,
    subscribe_button: &'static str,
    report: &'static str,
    back: &'static str,
    incident: &'static str,
}

const EN: Words = Words {
    title: "Status",
    overall: [
        "All systems operational",
        "Maintenance in progress",
        "Degraded performance",
        "Partial outage",
        "Major outage",
    ],
    states: ["Operational", "Under maintenance", "Degraded performance", "Partial outage", "Major outage"],
    active_incidents: "Active incidents",
    past_incidents: "Past incidents (14 days)",
    no_past_incidents: "No incidents in the last 14 days.",
    maintenance: "Scheduled maintenance",
    services: "Services",
    datastores: "Data protection",
    live_rpo: "Data at risk now (RPO)",
    rto_estimate: "Recovery time (RTO) estimate",
    target: "target",
    last_drill: "Last verified drill",
    no_drill: "no drill yet",
    last_restore: "Last tested restore",
    no_restore: "never tested by a restore",
    restore_took: "restore",
    restore_short: "recovery-point error",
    passed: "passed",
    failed: "failed",
    uptime: "Uptime over {n} days",
    uptime_unknown: "{p} of that time unknown: our monitoring was down",
    why_down: "Its health check is failing.",
    why_down_failing_over: "Its health check is failing while it is moved to another zone.",
    why_failing_over: "Being moved to another zone (failover in progress).",
    why_maintenance: "Scheduled maintenance:",
    why_incident: "Incident:",
    why_rpo_over: "Data a failure would lose now ({rpo}) is above its target ({target}).",
    why_rpo_unknown: "Nothing measures its data as protected right now (no replica answers).",
    why_rto_over: "Recovery would take {rto}, over its target ({target}).",
    no_data: "no data: the controller was not sampling",
    partial_data: "sampled part of the day",
    measured: "Measured",
    not_measured: "Not measured yet",
    statuses: ["Investigating", "Identified", "Monitoring", "Resolved"],
    lost_writes: "writes lost",
    from: "from",
    until: "until",
    failing_over: "Failover in progress",
    other_tier: "Other",
    explain: "RPO: how much recent data a failover would lose right now. RTO: how long recovery would take. Both are measured live against our contractual targets, and proven by regular disaster-recovery drills.",
    language: "日本語",
    unknown: "unknown",
    unknown_why: "not measured: no replica answers, or the primary is down; nothing proves the data is protected",
    affects: "Affects",
    split_brain: "two copies accept writes at once: recent data may diverge; our engineers are on it",
    subscribe: "Get notified",
    subscribe_explain: "We e-mail you when an incident opens, changes or ends, and about maintenance. We send a confirmation link first; every message has an unsubscribe link.",
    email: "E-mail address",
    every_service: "Tick none to follow every service.",
    subscribe_button: "Subscribe",
    report: "Post-incident report",
    back: "All systems",
    incident: "Incident",
};

const JA: Words = Words {
    title: "稼働状況",
    overall: [
        "すべてのシステムは正常に稼働しています",
        "メンテナンス中",
        "パフォーマンスが低下しています",
        "一部で障害が発生しています",
        "大規模な障害が発生しています",
    ],
    states: ["正常", "メンテナンス中", "パフォーマンス低下", "一部障害", "重大な障害"],
    active_incidents: "対応中のインシデント",
    past_incidents: "過去のインシデント（14日間）",
    no_past_incidents: "過去14日間にインシデントはありません。",
    maintenance: "予定されたメンテナンス",
    services: "サービス",
    datastores: "データ保護",
    live_rpo: "現在失われうるデータ（RPO）",
    rto_estimate: "復旧時間（RTO）の見込み",
    target: "目標",
    last_drill: "直近の検証済み訓練",
    no_drill: "訓練の実績なし",
    last_restore: "直近の復元テスト",
    no_restore: "復元テストの実績なし",
    restore_took: "復元",
    restore_short: "復旧時点の誤差",
    passed: "合格",
    failed: "不合格",
    uptime: "{n}日間の稼働率",
    uptime_unknown: "うち{p}は不明（監視が停止していた時間）",
    why_down: "ヘルスチェックが失敗しています。",
    why_down_failing_over: "別のゾーンへ切り替え中で、ヘルスチェックが失敗しています。",
    why_failing_over: "別のゾーンへ切り替え中です（フェイルオーバー実行中）。",
    why_maintenance: "予定されたメンテナンス：",
    why_incident: "インシデント：",
    why_rpo_over: "今障害が起きた場合に失われうるデータ（{rpo}）が目標（{target}）を超えています。",
    why_rpo_unknown: "データが保護されていることを現在計測できません（応答するレプリカがありません）。",
    why_rto_over: "復旧に{rto}かかる見込みで、目標（{target}）を超えています。",
    no_data: "データなし（コントローラーが計測していなかった期間）",
    partial_data: "一日の一部のみ計測",
    measured: "計測時刻",
    not_measured: "まだ計測していません",
    statuses: ["調査中", "原因特定", "経過観察", "解決済み"],
    lost_writes: "件の書き込みが失われた",
    from: "開始",
    until: "終了",
    failing_over: "フェイルオーバー実行中",
    other_tier: "その他",
    explain: "RPO：今フェイルオーバーした場合に失われうる直近のデータ量。RTO：復旧にかかる時間。どちらも契約上の目標に対して常時計測し、定期的な災害復旧訓練で実証しています。",
    language: "English",
    unknown: "不明",
    unknown_why: "計測できません：応答するレプリカがないか、プライマリが停止しています。データが保護されている保証はありません",
    affects: "影響範囲",
    split_brain: "二つのコピーが同時に書き込みを受け付けています。直近のデータが食い違う恐れがあり、対応中です",
    subscribe: "通知を受け取る",
    subscribe_explain: "インシデントの発生・更新・解決とメンテナンスをメールでお知らせします。最初に確認用のリンクをお送りします。すべてのメールに配信停止のリンクがあります。",
    email: "メールアドレス",
    every_service: "選択しない場合は、すべてのサービスが対象です。",
    subscribe_button: "購読する",
    report: "事後報告書",
    back: "稼働状況に戻る",
    incident: "インシデント",
};

fn words(lang: Lang) -> &'static Words {
    match lang {
        Lang::En => &EN,
        Lang::Ja => &JA,
    }
}

/// A service state in plain English (the customer pages are in English).
pub fn state_words(s: State) -> &'static str {
    EN.states[state_index(s)]
}

fn state_index(s: State) -> usize {
    match s {
        State::Operational => 0,
        State::UnderMaintenance => 1,
        State::DegradedPerformance => 2,
        State::PartialOutage => 3,
        State::MajorOutage => 4,
    }
}

pub use drctl_core::text::html_escape as esc;

pub use drctl_core::text::rfc3339_secs as rfc3339;

/// A datastore's last restore test, beside its live RPO: when, how long
/// the restore took, how far short of the point asked for it came back,
/// and whether it passed.
fn restore_cell(t: Option<&drctl_backup::report::RestoreTest>, w: &Words) -> String {
    let Some(t) = t else { return esc(w.no_restore) };
    let at = chrono::DateTime::parse_from_rfc3339(&t.at).ok().map(SystemTime::from);
    format!(
        r#"<time datetime="{}">{}</time>, {} {}, {} {} — <span class="{}">{}</span>"#,
        esc(&t.at),
        at.map(when).unwrap_or_else(|| esc(&t.at)),
        w.restore_took,
        secs(t.restore_s, w.unknown),
        w.restore_short,
        secs(t.recovery_point_error_s, w.unknown),
        if t.passed { "met" } else { "miss" },
        if t.passed { w.passed } else { w.failed }
    )
}

fn when(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).format("%Y-%m-%d %H:%M UTC").to_string()
}

pub fn secs(v: Option<f64>, unknown: &str) -> String {
    match v {
        None => unknown.to_string(),
        Some(s) if s < 1.0 => format!("{:.0} ms", s * 1000.0),
        Some(s) if s < 120.0 => format!("{s:.1} s"),
        Some(s) if s < 7200.0 => format!("{:.0} min", s / 60.0),
        Some(s) => format!("{:.1} h", s / 3600.0),
    }
}

fn status_word(w: &Words, status: &str) -> &'static str {
    match status {
        "investigating" => w.statuses[0],
        "identified" => w.statuses[1],
        "monitoring" => w.statuses[2],
        _ => w.statuses[3],
    }
}

/// The stylesheet, served at /static/status.css (no inline style: the CSP allows 'self' only).
pub const CSS: &str = r#":root{color-scheme:light dark;--bg:#fff;--fg:#1b1b1b;--muted:#5c5c5c;--line:#d9d9d9;--ok:#1a7f37;--warn:#9a6700;--bad:#cf222e;--maint:#0b62c4;--none:#b8b8b8;--card:#f6f8fa}
@media (prefers-color-scheme:dark){:root{--bg:#0f1115;--fg:#e8e8e8;--muted:#a8a8a8;--line:#30363d;--ok:#3fb950;--warn:#d29922;--bad:#f85149;--maint:#58a6ff;--none:#484f58;--card:#161b22}.banner{color:#0f1115}}
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--fg);font:16px/1.55 system-ui,-apple-system,"Segoe UI","Hiragino Sans","Noto Sans JP",sans-serif}
main{max-width:60rem;margin:0 auto;padding:1.5rem 1rem 4rem}a{color:var(--maint)}a:focus,summary:focus{outline:3px solid var(--maint);outline-offset:2px}
header{display:flex;justify-content:space-between;align-items:baseline;gap:1rem;flex-wrap:wrap}h1{font-size:1.6rem;margin:.2rem 0}
.banner{padding:1rem 1.2rem;border-radius:.4rem;font-weight:700;font-size:1.15rem;margin:1rem 0;color:#fff}
.s-operational{background:var(--ok)}.s-under_maintenance{background:var(--maint)}.s-degraded_performance{background:var(--warn)}.s-partial_outage{background:var(--warn)}.s-major_outage{background:var(--bad)}
.t-operational{color:var(--ok)}.t-under_maintenance{color:var(--maint)}.t-degraded_performance,.t-partial_outage{color:var(--warn)}.t-major_outage{color:var(--bad)}
section{margin:2rem 0}h2{font-size:1.2rem;border-bottom:1px solid var(--line);padding-bottom:.3rem}h3{font-size:1.05rem;margin:1.2rem 0 .4rem}
.card{background:var(--card);border:1px solid var(--line);border-radius:.4rem;padding:.8rem 1rem;margin:.6rem 0}
.svc{display:grid;grid-template-columns:1fr auto;gap:.2rem 1rem}.svc .name{font-weight:700}.meta{color:var(--muted);font-size:.92rem}
.nums{display:grid;grid-template-columns:repeat(auto-fit,minmax(13rem,1fr));gap:.2rem 1rem;font-size:.92rem;grid-column:1/-1}
.miss{color:var(--bad);font-weight:700}.met{color:var(--ok)}
.bars{grid-column:1/-1;display:block;width:100%;height:34px}.bars rect.ok{fill:var(--ok)}.bars rect.some{fill:var(--warn)}.bars rect.bad{fill:var(--bad)}.bars rect.none{fill:var(--none)}
ol.updates{list-style:none;padding:0;margin:.4rem 0 0}ol.updates li{border-left:3px solid var(--line);padding:.1rem .7rem;margin:.4rem 0}
.why-banner{font-weight:400}.why{grid-column:1/-1;margin:.1rem 0 0;font-size:.9rem;color:var(--muted)}.st{font-weight:700}table{border-collapse:collapse;width:100%;font-size:.92rem}th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid var(--line)}
footer{color:var(--muted);font-size:.85rem;margin-top:3rem}.sr{position:absolute;left:-9999px}
"#;

/// The uptime line: over how many days, and how much of it is unknown.
fn uptime_text(s: &ServiceView, w: &Words) -> String {
    let label = w.uptime.replace("{n}", &s.uptime_days.max(1).to_string());
    let value = s.uptime_90d.map_or_else(|| w.no_data.to_string(), |u| format!("{u:.2}%"));
    match s.uptime_unknown_pct.filter(|p| *p >= 0.01) {
        Some(p) => format!("{label}: {value} ({})", w.uptime_unknown.replace("{p}", &format!("{p:.2}%"))),
        None => format!("{label}: {value}"),
    }
}

/// Why a service is not operational, in one line.
fn why_text(why: &crate::view::Why, w: &Words) -> String {
    use crate::view::Why;
    let s = |v: Option<f64>| secs(v, w.unknown);
    match why {
        Why::Down { failing_over: false } => w.why_down.to_string(),
        Why::Down { failing_over: true } => w.why_down_failing_over.to_string(),
        Why::FailingOver => w.why_failing_over.to_string(),
        Why::Maintenance { title } => format!("{} {title}", w.why_maintenance),
        Why::Incident { title } => format!("{} {title}", w.why_incident),
        Why::RpoOver { rpo_s, target_s } => {
            w.why_rpo_over.replace("{rpo}", &s(Some(*rpo_s))).replace("{target}", &s(Some(*target_s)))
        }
        Why::RpoUnknown => w.why_rpo_unknown.to_string(),
        Why::RtoOver { rto_s, target_s } => {
            w.why_rto_over.replace("{rto}", &s(*rto_s)).replace("{target}", &s(*target_s))
        }
    }
}

/// Why, in English (the customer pages).
pub fn why_words(why: &crate::view::Why) -> String {
    why_text(why, &EN)
}

fn uptime_svg(s: &ServiceView, w: &Words, expected: i64) -> String {
    let n = s.uptime.len().max(1) as f64;
    let width = 900.0;
    let bw = width / n;
    let mut out = format!(
        r#"<svg class="bars" viewBox="0 0 {width} 34" preserveAspectRatio="none" role="img" aria-label="{}">"#,
        esc(&uptime_text(s, w))
    );
    for (i, d) in s.uptime.iter().enumerate() {
        let date = chrono::DateTime::<chrono::Utc>::from(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(d.day as u64 * 86_400),
        )
        .format("%Y-%m-%d")
        .to_string();
        let (class, tip) = if d.checks == 0 {
            ("none", format!("{date}: {}", w.no_data))
        } else {
            let pct = d.healthy as f64 / d.checks as f64 * 100.0;
            let class = if pct >= 99.9 {
                "ok"
            } else if pct >= 95.0 {
                "some"
            } else {
                "bad"
            };
            // A day the controller sampled less than half of says so.
            let partial = if d.checks < expected / 2 { format!(" ({})", w.partial_data) } else { String::new() };
            (class, format!("{date}: {pct:.2}%{partial}"))
        };
        let _ = write!(
            out,
            r#"<rect class="{class}" x="{:.2}" y="0" width="{:.2}" height="34"><title>{}</title></rect>"#,
            i as f64 * bw + 0.5,
            (bw - 1.5).max(0.5),
            esc(&tip)
        );
    }
    out.push_str("</svg>");
    out
}

fn objective(value: Option<f64>, target: Option<f64>, w: &Words) -> String {
    let v = secs(value, w.unknown);
    match (value, target) {
        // Unknown is not met: nothing proves the data is protected.
        (None, Some(t)) => format!(
            r#"<span class="miss" title="{}">{v}</span> / {} {}"#,
            w.unknown_why,
            w.target,
            secs(Some(t), w.unknown)
        ),
        (Some(x), Some(t)) if x > t => {
            format!(r#"<span class="miss">{v}</span> / {} {}"#, w.target, secs(Some(t), w.unknown))
        }
        (_, Some(t)) => format!(r#"<span class="met">{v}</span> / {} {}"#, w.target, secs(Some(t), w.unknown)),
        _ => v,
    }
}

fn incident_html(out: &mut String, i: &Incident, w: &Words) {
    let _ = write!(
        out,
        r#"<article class="card" id="incident-{0}"><h3><a href="/incidents/{0}">{1}</a></h3><p class="meta"><span class="st">{2}</span>"#,
        i.id,
        esc(&i.title),
        esc(status_word(w, &i.status))
    );
    if !i.services.is_empty() {
        let _ = write!(out, " · {}: {}", esc(w.affects), esc(&i.services.join(", ")));
    }
    out.push_str(r#"</p><ol class="updates">"#);
    for u in &i.updates {
        let _ = write!(
            out,
            r#"<li><span class="st">{}</span> <time datetime="{}">{}</time><br>{}</li>"#,
            esc(status_word(w, &u.status)),
            rfc3339(u.at),
            when(u.at),
            esc(&u.body)
        );
    }
    out.push_str("</ol></article>");
}

/// The subscribe form: a plain POST, no script (docs/customers.md).
fn subscribe_form(h: &mut String, v: &View, lang: Lang, w: &Words) {
    let _ = write!(
        h,
        r#"<section aria-labelledby="h-sub"><h2 id="h-sub">{}</h2><p class="meta">{}</p><form method="post" action="/subscribe" class="card"><input type="hidden" name="lang" value="{}"><p><label>{} <input type="email" name="email" required maxlength="254" autocomplete="email"></label></p><fieldset><legend>{}</legend>"#,
        w.subscribe,
        w.subscribe_explain,
        lang.code(),
        w.email,
        w.services
    );
    for s in &v.services {
        let _ = write!(h, r#"<label><input type="checkbox" name="services" value="{0}"> {0}</label> "#, esc(&s.name));
    }
    let _ = write!(
        h,
        r#"<p class="meta">{}</p></fieldset><p><button type="submit">{}</button></p></form></section>"#,
        w.every_service, w.subscribe_button
    );
}

/// The head of a page of this site, and its closing.
fn shell(title: &str, lang: Lang, body: &str) -> String {
    format!(
        r#"<!doctype html><html lang="{}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>{}</title><link rel="stylesheet" href="/static/status.css"></head><body><main>{body}</main></body></html>"#,
        lang.code(),
        esc(title)
    )
}

/// A one-message page (a subscription confirmed, an unsubscribe done).
pub fn message(page: &str, heading: &str, text: &str, lang: Lang) -> String {
    let w = words(lang);
    shell(
        &format!("{page} · {heading}"),
        lang,
        &format!(
            r#"<header><h1>{}</h1></header><p class="card">{}</p><p><a href="/?lang={}">{}</a></p>"#,
            esc(heading),
            esc(text),
            lang.code(),
            w.back
        ),
    )
}

/// `/incidents/ID`: one incident, its updates and its published report.
pub fn incident_page(v: &View, i: &Incident, report: Option<&str>, lang: Lang) -> String {
    let w = words(lang);
    let mut body = format!(
        r#"<header><h1>{} · {} {}</h1><nav><a href="/?lang={}">{}</a></nav></header>"#,
        esc(&v.name),
        w.incident,
        i.id,
        lang.code(),
        w.back
    );
    incident_html(&mut body, i, w);
    if let Some(r) = report {
        let _ = write!(body, r#"<section class="card report" aria-label="{}">{}</section>"#, w.report, markdown(r));
    }
    shell(&format!("{} · {}", v.name, i.title), lang, &body)
}

/// The Markdown that drafted reports use (headings, lists, tables,
/// paragraphs, `code`, **bold**, *emphasis*), every text escaped.
pub fn markdown(src: &str) -> String {
    fn inline(s: &str) -> String {
        let mut rest = esc(s);
        for (mark, open, close) in [("**", "<strong>", "</strong>"), ("`", "<code>", "</code>"), ("*", "<em>", "</em>")]
        {
            let mut acc = String::new();
            let parts: Vec<&str> = rest.split(mark).collect();
            if parts.len() >= 3 {
                for (n, p) in parts.iter().enumerate() {
                    if n > 0 {
                        let closing = n % 2 == 0;
                        if !closing && n == parts.len() - 1 {
                            acc.push_str(mark);
                        } else {
                            acc.push_str(if closing { close } else { open });
                        }
                    }
                    acc.push_str(p);
                }
                rest = acc;
            }
        }
        rest
    }
    let mut h = String::new();
    let mut in_list = false;
    let mut in_table = false;
    let mut para: Vec<&str> = Vec::new();
    let flush = |h: &mut String, para: &mut Vec<&str>| {
        if !para.is_empty() {
            let _ = write!(h, "<p>{}</p>", inline(&para.join(" ")));
            para.clear();
        }
    };
    for line in src.lines() {
        let t = line.trim();
        let is_item = t.starts_with("- ");
        let is_row = t.starts_with('|');
        if in_list && !is_item {
            h.push_str("</ul>");
            in_list = false;
        }
        if in_table && !is_row {
            h.push_str("</tbody></table>");
            in_table = false;
        }
        if t.is_empty() {
            flush(&mut h, &mut para);
        } else if let Some(level) = (1..=4).find(|n| t.starts_with(&format!("{} ", "#".repeat(*n)))) {
            flush(&mut h, &mut para);
            let _ = write!(h, "<h{n}>{}</h{n}>", inline(t[level + 1..].trim()), n = level + 1);
        } else if is_item {
            flush(&mut h, &mut para);
            if !in_list {
                h.push_str("<ul>");
                in_list = true;
            }
            let _ = write!(h, "<li>{}</li>", inline(&t[2..]));
        } else if is_row {
            flush(&mut h, &mut para);
            let cells: Vec<&str> = t.trim_matches('|').split('|').map(str::trim).collect();
            if cells.iter().all(|c| !c.is_empty() && c.chars().all(|ch| ch == '-' || ch == ':')) {
                continue;
            }
            if !in_table {
                h.push_str("<table><thead><tr>");
                for c in &cells {
                    let _ = write!(h, r#"<th scope="col">{}</th>"#, inline(c));
                }
                h.push_str("</tr></thead><tbody>");
                in_table = true;
                continue;
            }
            h.push_str("<tr>");
            for c in &cells {
                let _ = write!(h, "<td>{}</td>", inline(c));
            }
            h.push_str("</tr>");
        } else {
            para.push(t);
        }
    }
    flush(&mut h, &mut para);
    if in_list {
        h.push_str("</ul>");
    }
    if in_table {
        h.push_str("</tbody></table>");
    }
    h
}

pub fn render(v: &View, lang: Lang) -> String {
    let w = words(lang);
    let mut h = String::with_capacity(32 * 1024);
    head_html(&mut h, v, lang, w);
    banner_html(&mut h, v, w);
    if !v.active_incidents.is_empty() || !v.running_executions.is_empty() {
        active_html(&mut h, v, w);
    }
    if !v.maintenance.is_empty() {
        maintenance_html(&mut h, v, w);
    }
    services_html(&mut h, v, w);
    if let Some(st) = &v.status {
        datastores_html(&mut h, v, st, w);
    }
    past_incidents_html(&mut h, v, w);
    if v.subscribe_form {
        subscribe_form(&mut h, v, lang, w);
    }
    let _ = write!(
        h,
        r#"<footer>drctl · <time datetime="{}">{}</time></footer></main></body></html>"#,
        rfc3339(v.now),
        when(v.now)
    );
    h
}

/// The document's head and the page header, with the link to the page in
/// the other language.
fn head_html(h: &mut String, v: &View, lang: Lang, w: &Words) {
    let other = match lang {
        Lang::En => Lang::Ja,
        Lang::Ja => Lang::En,
    };
    let _ = write!(
        h,
        r#"<!doctype html><html lang="{}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><meta http-equiv="refresh" content="30"><title>{} · {}</title><link rel="stylesheet" href="/static/status.css"><link rel="alternate" type="application/atom+xml" href="/feed.atom"></head><body><main>"#,
        lang.code(),
        esc(&v.name),
        w.title
    );
    let _ = write!(
        h,
        r#"<header><h1>{} · {}</h1><nav><a href="?lang={}" hreflang="{}" lang="{}">{}</a> · <a href="/feed.atom">Atom</a> · <a href="/api/v1/status">JSON</a></nav></header>"#,
        esc(&v.name),
        w.title,
        other.code(),
        other.code(),
        other.code(),
        w.language
    );
}

/// The overall state and when it was measured. The banner says why: the
/// worst service's reason (and how many more).
fn banner_html(h: &mut String, v: &View, w: &Words) {
    let worst: Vec<&ServiceView> = v.services.iter().filter(|s| s.state == v.overall && s.why.is_some()).collect();
    let why = worst.first().and_then(|s| s.why.as_ref().map(|y| (s, y))).map_or_else(String::new, |(s, y)| {
        let more = if worst.len() > 1 { format!(" (+{})", worst.len() - 1) } else { String::new() };
        format!(r#"<span class="why-banner"> — {}: {}{more}</span>"#, esc(&s.name), esc(&why_text(y, w)))
    });
    let _ = write!(
        h,
        r#"<p class="banner s-{}" role="status">{}{why}</p>"#,
        v.overall.as_str(),
        w.overall[state_index(v.overall)]
    );
    match &v.measured_at {
        Some(at) => {
            let _ = write!(h, r#"<p class="meta">{}: <time datetime="{0}">{}</time></p>"#, w.measured, esc(at));
        }
        None => {
            let _ = write!(h, r#"<p class="meta">{}</p>"#, w.not_measured);
        }
    }
}

/// Open incidents and the failovers running now.
fn active_html(h: &mut String, v: &View, w: &Words) {
    let _ = write!(h, r#"<section aria-labelledby="h-active"><h2 id="h-active">{}</h2>"#, w.active_incidents);
    for i in &v.active_incidents {
        incident_html(h, i, w);
    }
    for (id, ents) in &v.running_executions {
        let _ = write!(h, r#"<p class="card">{}: {} ({})</p>"#, w.failing_over, esc(&ents.join(", ")), esc(id));
    }
    h.push_str("</section>");
}

/// Announced maintenance windows.
fn maintenance_html(h: &mut String, v: &View, w: &Words) {
    let _ = write!(h, r#"<section aria-labelledby="h-maint"><h2 id="h-maint">{}</h2>"#, w.maintenance);
    for m in &v.maintenance {
        let _ = write!(
            h,
            r#"<article class="card"><h3>{}</h3><p class="meta">{} <time datetime="{}">{}</time> · {} <time datetime="{}">{}</time>{}</p><p>{}</p></article>"#,
            esc(&m.title),
            w.from,
            rfc3339(m.starts_at),
            when(m.starts_at),
            w.until,
            rfc3339(m.ends_at),
            when(m.ends_at),
            if m.services.is_empty() {
                String::new()
            } else {
                format!(" · {}: {}", esc(w.affects), esc(&m.services.join(", ")))
            },
            esc(&m.body)
        );
    }
    h.push_str("</section>");
}

/// The services, tier by tier, each a card.
fn services_html(h: &mut String, v: &View, w: &Words) {
    let _ = write!(
        h,
        r#"<section aria-labelledby="h-svc"><h2 id="h-svc">{}</h2><p class="meta">{}</p>"#,
        w.services, w.explain
    );
    for tier in &v.tiers {
        let mine: Vec<&ServiceView> = v.services.iter().filter(|s| s.tier.as_deref().unwrap_or("") == tier).collect();
        if mine.is_empty() {
            continue;
        }
        let _ = write!(h, "<h3>{}</h3>", if tier.is_empty() { w.other_tier.to_string() } else { esc(tier) });
        for s in mine {
            service_card(h, v, s, w);
        }
    }
    h.push_str("</section>");
}

/// One service: its state and why, its live RPO and RTO estimate against
/// their objectives, its last drill and its uptime.
fn service_card(h: &mut String, v: &View, s: &ServiceView, w: &Words) {
    let _ = write!(
        h,
        r#"<div class="card svc" id="svc-{0}"><span class="name">{0}</span><span class="t-{1}">{2}</span>{8}<div class="nums"><span>{3}: {4}</span><span>{5}: {6}</span><span>{7}: "#,
        esc(&s.name),
        s.state.as_str(),
        w.states[state_index(s.state)],
        w.live_rpo,
        objective(s.rpo_s, s.rpo_target_s, w),
        w.rto_estimate,
        objective(s.rto_estimate_s, s.rto_target_s, w),
        w.last_drill,
        s.why.as_ref().map(|y| format!(r#"<p class="why">{}</p>"#, esc(&why_text(y, w)))).unwrap_or_default()
    );
    match &s.last_drill {
        Some(d) => {
            let lost = d.lost_writes.map(|n| format!(", {n} {}", w.lost_writes)).unwrap_or_default();
            let _ = write!(
                h,
                r#"<time datetime="{}">{}</time>, RTO {}, RPO {}{} — <span class="{}">{}</span>"#,
                rfc3339(d.at),
                when(d.at),
                secs(d.rto_s, w.unknown),
                secs(d.rpo_s, w.unknown),
                lost,
                if d.passed { "met" } else { "miss" },
                if d.passed { w.passed } else { w.failed }
            );
        }
        None => h.push_str(w.no_drill),
    }
    let _ = write!(
        h,
        r#"</span><span>{}</span></div>{}</div>"#,
        esc(&uptime_text(s, w)),
        uptime_svg(s, w, v.expected_checks_per_day)
    );
}

/// Each datastore's live RPO (or split brain) and its last restore test.
fn datastores_html(h: &mut String, v: &View, st: &drctl_core::status::StatusReport, w: &Words) {
    let _ = write!(
        h,
        r#"<section aria-labelledby="h-data"><h2 id="h-data">{}</h2><table><thead><tr><th scope="col"></th><th scope="col">{}</th><th scope="col">{}</th></tr></thead><tbody>"#,
        w.datastores, w.live_rpo, w.last_restore
    );
    for d in &st.datastores {
        let cell = if d.split_brain {
            format!(r#"<span class="miss">{}</span>"#, w.split_brain)
        } else {
            objective(d.rpo_s, d.rpo_target_s, w)
        };
        let restore = restore_cell(v.restore_tests.iter().find(|(n, _)| *n == d.name).map(|(_, t)| t), w);
        let _ = write!(h, r#"<tr><th scope="row">{}</th><td>{cell}</td><td>{restore}</td></tr>"#, esc(&d.name));
    }
    h.push_str("</tbody></table></section>");
}

/// Past incidents (or a line saying there were none).
fn past_incidents_html(h: &mut String, v: &View, w: &Words) {
    let _ = write!(h, r#"<section aria-labelledby="h-past"><h2 id="h-past">{}</h2>"#, w.past_incidents);
    if v.past_incidents.is_empty() {
        let _ = write!(h, "<p>{}</p>", w.no_past_incidents);
    }
    for i in &v.past_incidents {
        incident_html(h, i, w);
    }
    h.push_str("</section>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_from_query_then_accept_language() {
        assert_eq!(Lang::pick(Some("ja"), Some("en")), Lang::Ja);
        assert_eq!(Lang::pick(None, Some("fr-FR,ja;q=0.8,en;q=0.5")), Lang::Ja);
        assert_eq!(Lang::pick(None, Some("en-GB,ja;q=0.9")), Lang::En);
        assert_eq!(Lang::pick(Some("xx"), None), Lang::En);
    }

    #[test]
    fn markdown_is_escaped_and_structured() {
        let h = markdown("# Report <x>\n\n- **who** did `it`\n\n| a | b |\n|---|---|\n| 1 | <2> |\n\ntext *here*");
        assert_eq!(
            h,
            "<h2>Report &lt;x&gt;</h2><ul><li><strong>who</strong> did <code>it</code></li></ul><table><thead><tr><th scope=\"col\">a</th><th scope=\"col\">b</th></tr></thead><tbody><tr><td>1</td><td>&lt;2&gt;</td></tr></tbody></table><p>text <em>here</em></p>"
        );
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(secs(Some(0.4), "?"), "400 ms");
        assert_eq!(secs(Some(90.0), "?"), "90.0 s");
        assert_eq!(secs(None, "?"), "?");
    }
}

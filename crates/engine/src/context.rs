//! The conversation a model is sent, bounded by its agent's context budget
//! (`context.max_tokens` or `context.max_bytes`).
//!
//! The run keeps the whole conversation (the journal is the checkpoint); only what
//! one call is sent is cut. Past the budget the oldest turns are left out whole —
//! earlier requests of the session first (a user message and its answer), then the
//! request's own oldest model turns (each with its tool results, so no result is
//! ever sent without the call it answers). The system prompt, the request's input
//! and its newest model turn are always sent. The model is told what was left out
//! by a note in a user message, so it does not take the gap for the whole story.

use harness_config::ContextBudget;
use harness_core::{Message, Role};
use std::borrow::Cow;

/// What `messages` become under `budget`: borrowed as they are when they fit.
#[cfg(test)]
fn fit<'a>(messages: &'a [Message], budget: &ContextBudget) -> Cow<'a, [Message]> {
    fit_counted(messages, budget, &mut Tally::default())
}

/// The estimated size of a conversation that only grows (a run's): each message
/// is sized once, when first seen, so a turn that fits its budget costs as much
/// as the messages added since the last turn, not the whole conversation.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    counted: usize,
    bytes: u64,
}

impl Tally {
    fn total(&mut self, messages: &[Message]) -> u64 {
        if messages.len() < self.counted {
            // Not the conversation it counted (it never shrinks): start over.
            *self = Tally::default();
        }
        self.bytes += messages[self.counted..].iter().map(size).sum::<u64>();
        self.counted = messages.len();
        self.bytes
    }
}

/// [`fit`] with the conversation's size kept in `tally` between calls.
pub(crate) fn fit_counted<'a>(
    messages: &'a [Message],
    budget: &ContextBudget,
    tally: &mut Tally,
) -> Cow<'a, [Message]> {
    let limit = budget.limit_bytes();
    if tally.total(messages) <= limit {
        return Cow::Borrowed(messages);
    }
    let sizes: Vec<u64> = messages.iter().map(size).collect();
    let mut total: u64 = sizes.iter().sum();
    let Some(input) = messages.iter().rposition(|m| m.role == Role::User) else {
        return Cow::Borrowed(messages);
    };
    let first = usize::from(messages.first().is_some_and(|m| m.role == Role::System));
    // Units of earlier requests (each starts at a user message), then this request's
    // model turns (each starts at an assistant message, its tool results follow).
    let history = units(first, input, |m| m.role == Role::User, messages);
    let mut turns = units(
        input + 1,
        messages.len(),
        |m| m.role == Role::Assistant,
        messages,
    );
    turns.pop(); // the newest turn is always sent
    let mut dropped_history = 0;
    let mut dropped_turns = 0;
    let mut cut = vec![false; messages.len()];
    for (unit, is_history) in history
        .iter()
        .map(|u| (u, true))
        .chain(turns.iter().map(|u| (u, false)))
    {
        if total <= limit {
            break;
        }
        for i in unit.clone() {
            cut[i] = true;
            total -= sizes[i];
        }
        if is_history {
            dropped_history += unit.len();
        } else {
            dropped_turns += 1;
        }
    }
    let mut out: Vec<Message> = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        if cut[i] {
            continue;
        }
        let mut m = m.clone();
        let first_kept_after_system = i >= first && out.len() == first;
        if dropped_history > 0 && first_kept_after_system {
            m.content = format!(
                "[agent-harness: {dropped_history} earlier messages of this conversation were left out to fit the context budget.]\n\n{}",
                m.content
            );
        }
        if dropped_turns > 0 && i == input {
            m.content = format!(
                "{}\n\n[agent-harness: your first {dropped_turns} turns on this request (with their tool results) were left out to fit the context budget; the latest follow.]",
                m.content
            );
        }
        out.push(m);
    }
    Cow::Owned(out)
}

/// Ranges of `messages[from..to]`, each starting where `starts` holds.
fn units(
    from: usize,
    to: usize,
    starts: impl Fn(&Message) -> bool,
    messages: &[Message],
) -> Vec<std::ops::Range<usize>> {
    let mut out: Vec<std::ops::Range<usize>> = Vec::new();
    for (i, m) in messages.iter().enumerate().take(to).skip(from) {
        match out.last_mut() {
            Some(last) if !starts(m) => last.end = i + 1,
            _ => out.push(i..i + 1),
        }
    }
    out
}

/// The length of `v` as compact JSON, counted without building the string.
fn json_len(v: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut n = Count(0);
    // Writing a `Value` to a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut n, v);
    n.0
}

/// Bytes a message is estimated to take (its text, calls and thinking).
fn size(m: &Message) -> u64 {
    let calls: usize = m
        .tool_calls
        .iter()
        .map(|c| c.tool.len() + json_len(&c.arguments) + 32)
        .sum();
    let thinking: usize = m.info.thinking.iter().map(|t| t.text.len()).sum();
    (m.content.len() + calls + thinking + 16) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use harness_core::{CallId, ModelTurn, ToolCall};

    fn turn(n: usize) -> Vec<Message> {
        let call = ToolCall {
            call_id: CallId::generate(),
            tool: "t".into(),
            arguments: serde_json::json!({"n": n}),
        };
        vec![
            Message::assistant(&ModelTurn::ToolCalls {
                text: format!("turn {n} {}", "x".repeat(200)),
                calls: vec![call.clone()],
            }),
            Message::tool(call.call_id, format!("result {n} {}", "y".repeat(200))),
        ]
    }

    fn conversation() -> Vec<Message> {
        let mut m = vec![Message::system("be brief")];
        for i in 0..3 {
            m.push(Message::user(format!(
                "old question {i} {}",
                "q".repeat(300)
            )));
            m.push(Message::assistant(&ModelTurn::Text {
                text: format!("old answer {i}"),
            }));
        }
        m.push(Message::user("the task"));
        for n in 0..4 {
            m.extend(turn(n));
        }
        m
    }

    fn budget(bytes: u64) -> ContextBudget {
        ContextBudget {
            max_bytes: Some(bytes),
            max_tokens: None,
        }
    }

    #[test]
    fn a_conversation_within_budget_is_sent_as_it_is() {
        let m = conversation();
        assert!(matches!(
            fit(&m, &ContextBudget::default()),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn earlier_requests_go_first_with_a_note() {
        let m = conversation();
        let total: u64 = m.iter().map(size).sum();
        let out = fit(&m, &budget(total - 300));
        assert_eq!(out.len(), m.len() - 2, "one earlier exchange left out");
        assert_eq!(out[0].content, "be brief");
        assert!(
            out[1]
                .content
                .starts_with("[agent-harness: 2 earlier messages")
        );
        assert!(out[1].content.contains("old question 1"));
        assert!(out.iter().map(size).sum::<u64>() <= total - 300 + 100);
    }

    #[test]
    fn then_the_oldest_turns_with_their_results_never_the_newest() {
        let m = conversation();
        let out = fit(&m, &budget(1));
        // system, the input (with both notes), and the newest turn with its result.
        assert_eq!(out.len(), 4, "{out:#?}");
        assert_eq!(out[0].role, Role::System);
        assert_eq!(out[1].role, Role::User);
        assert!(
            out[1]
                .content
                .starts_with("[agent-harness: 6 earlier messages")
        );
        assert!(out[1].content.contains("the task"));
        assert!(
            out[1]
                .content
                .contains("your first 3 turns on this request")
        );
        assert!(out[2].content.starts_with("turn 3"));
        assert_eq!(out[3].role, Role::Tool);
        assert_eq!(out[3].call_id, out[2].tool_calls[0].call_id.clone().into());
    }

    #[test]
    fn no_tool_result_is_sent_without_its_call() {
        let m = conversation();
        let total: u64 = m.iter().map(size).sum();
        for limit in (0..total).step_by(97) {
            let out = fit(&m, &budget(limit));
            for (i, msg) in out.iter().enumerate() {
                if msg.role == Role::Tool {
                    let call = msg.call_id.as_ref().unwrap();
                    assert!(
                        out[..i]
                            .iter()
                            .any(|a| a.tool_calls.iter().any(|c| &c.call_id == call)),
                        "orphan result at limit {limit}"
                    );
                }
            }
        }
    }

    /// A run keeps one tally for its whole conversation: as messages are appended
    /// between turns, each cut must be the one a fresh count gives.
    #[test]
    fn a_growing_conversation_is_cut_as_a_fresh_count_cuts_it() {
        let all = conversation();
        let total: u64 = all.iter().map(size).sum();
        for limit in [total / 3, total / 2, total - 1, total] {
            let mut tally = Tally::default();
            for n in 1..=all.len() {
                let grown = &all[..n];
                let kept = fit_counted(grown, &budget(limit), &mut tally);
                assert_eq!(
                    kept,
                    fit(grown, &budget(limit)),
                    "limit {limit}, {n} messages"
                );
            }
        }
        // Another (shorter) conversation: the tally starts over.
        let mut tally = Tally::default();
        fit_counted(&all, &budget(total), &mut tally);
        let short = &all[..2];
        assert_eq!(tally.total(short), short.iter().map(size).sum::<u64>());
    }

    #[test]
    fn json_is_measured_as_written() {
        for v in [
            serde_json::json!({}),
            serde_json::json!({"path": "a/b", "n": [1, 2.5, null], "s": "é\"\n"}),
        ] {
            assert_eq!(json_len(&v), v.to_string().len());
        }
    }
}

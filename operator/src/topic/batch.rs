//! Coalescing of concurrent admin calls into one Kafka request.
//!
//! The controller reconciles every KafkaTopic in its own pass, concurrently. Applying 200
//! manifests at once would make 200 Metadata, 200 DescribeConfigs and 200 CreateTopics
//! requests; Kafka's admin APIs all take many topics per request, so a [`Batcher`] queues
//! the passes' calls and runs them together: the first call starts a batch at once, and the
//! calls that arrive while a batch is in flight make up the next one. No linger: a lone call
//! is never delayed, and the batch size follows the load by itself (Strimzi's topic operator
//! batches with a fixed linger instead; this is both faster for one topic and never worse for
//! many).

use std::collections::{BTreeSet, VecDeque};
use std::future::Future;

use tokio::sync::{mpsc, oneshot};

/// Most calls one request carries (Strimzi's default `STRIMZI_MAX_BATCH_SIZE`).
pub const MAX_BATCH: usize = 100;

/// A call's input: its key identifies what it acts on. Two calls with one key never share a
/// batch (Kafka refuses a CreateTopics or DeleteTopics that names a topic twice), the later
/// one waits for the next batch.
pub trait Keyed {
    /// What the call acts on (a topic name).
    fn key(&self) -> &str;
}

impl Keyed for String {
    fn key(&self) -> &str {
        self
    }
}

type Waiter<I, O> = (I, oneshot::Sender<O>);

/// A queue of calls of one kind, served by one task that runs them in batches.
pub struct Batcher<I, O> {
    queue: mpsc::UnboundedSender<Waiter<I, O>>,
}

impl<I, O> Batcher<I, O>
where
    I: Keyed + Send + 'static,
    O: Send + 'static,
{
    /// Spawns the task that serves the queue (on the current Tokio runtime) with `run`,
    /// which must answer a batch with one output per input, in order; `kind` names the
    /// calls in the debug log. The task ends when the batcher is dropped.
    pub fn spawn<F, Fut>(kind: &'static str, run: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<O>> + Send,
    {
        let (queue, mut calls) = mpsc::unbounded_channel::<Waiter<I, O>>();
        tokio::spawn(async move {
            let mut held: VecDeque<Waiter<I, O>> = VecDeque::new();
            loop {
                let first = match held.pop_front() {
                    Some(w) => w,
                    None => match calls.recv().await {
                        Some(w) => w,
                        None => return,
                    },
                };
                let mut batch = vec![first];
                let mut keys: BTreeSet<String> = BTreeSet::new();
                keys.insert(batch[0].0.key().to_string());
                // Calls held back from the last batch first, then what has queued since.
                let mut still_held = VecDeque::new();
                while let Some(w) = held.pop_front() {
                    take(&mut batch, &mut keys, &mut still_held, w);
                }
                while batch.len() < MAX_BATCH {
                    match calls.try_recv() {
                        Ok(w) => take(&mut batch, &mut keys, &mut still_held, w),
                        Err(_) => break,
                    }
                }
                held = still_held;
                let (inputs, waiters): (Vec<I>, Vec<oneshot::Sender<O>>) =
                    batch.into_iter().unzip();
                let (size, started) = (inputs.len(), std::time::Instant::now());
                let outputs = run(inputs).await;
                tracing::debug!(
                    kind,
                    size,
                    took_ms = started.elapsed().as_millis() as u64,
                    "batch"
                );
                debug_assert_eq!(outputs.len(), waiters.len(), "one output per input");
                for (waiter, output) in waiters.into_iter().zip(outputs) {
                    // The caller may have gone (its pass was cancelled): nothing to tell.
                    let _ = waiter.send(output);
                }
            }
        });
        Batcher { queue }
    }

    /// Queues `input` and waits for its output; `None` if the serving task is gone (its
    /// `run` panicked, or the runtime is shutting down).
    pub async fn call(&self, input: I) -> Option<O> {
        let (tx, rx) = oneshot::channel();
        self.queue.send((input, tx)).ok()?;
        rx.await.ok()
    }
}

fn take<I: Keyed, O>(
    batch: &mut Vec<Waiter<I, O>>,
    keys: &mut BTreeSet<String>,
    held: &mut VecDeque<Waiter<I, O>>,
    w: Waiter<I, O>,
) {
    if batch.len() < MAX_BATCH && keys.insert(w.0.key().to_string()) {
        batch.push(w);
    } else {
        held.push_back(w);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Every batch a test batcher was given.
    type Seen = Arc<Mutex<Vec<Vec<String>>>>;

    /// A batcher whose run records each batch it was given and answers `<key>!`.
    fn recording() -> (Batcher<String, String>, Seen) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let batcher = Batcher::spawn("test", move |batch: Vec<String>| {
            let log = log.clone();
            async move {
                // Long enough for every concurrent caller to queue behind the first batch.
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                log.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(batch.clone());
                batch.into_iter().map(|k| format!("{k}!")).collect()
            }
        });
        (batcher, seen)
    }

    #[tokio::test]
    async fn concurrent_calls_share_a_batch_and_each_gets_its_own_answer() {
        let (batcher, seen) = recording();
        let batcher = Arc::new(batcher);
        let calls: Vec<_> = (0..250)
            .map(|i| {
                let b = batcher.clone();
                tokio::spawn(async move { b.call(format!("t{i}")).await })
            })
            .collect();
        for (i, call) in calls.into_iter().enumerate() {
            let answer = call.await.ok().flatten();
            assert_eq!(answer.as_deref(), Some(format!("t{i}!").as_str()));
        }
        let batches = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        // 250 calls: far fewer requests than calls, none larger than MAX_BATCH.
        assert!(batches.len() <= 5, "{} batches", batches.len());
        assert!(batches.iter().all(|b| b.len() <= MAX_BATCH));
        assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 250);
    }

    #[tokio::test]
    async fn a_key_appears_once_per_batch() {
        let (batcher, seen) = recording();
        let batcher = Arc::new(batcher);
        let calls: Vec<_> = ["a", "b", "a", "a", "c"]
            .iter()
            .map(|k| {
                let b = batcher.clone();
                let k = k.to_string();
                tokio::spawn(async move { b.call(k).await })
            })
            .collect();
        for call in calls {
            assert!(call.await.ok().flatten().is_some());
        }
        let batches = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for b in &batches {
            let unique: BTreeSet<&String> = b.iter().collect();
            assert_eq!(unique.len(), b.len(), "a key twice in {b:?}");
        }
        let all: usize = batches.iter().map(Vec::len).sum();
        assert_eq!(all, 5);
    }

    #[tokio::test]
    async fn a_lone_call_is_answered_without_waiting_for_company() {
        let (batcher, seen) = recording();
        let started = std::time::Instant::now();
        assert_eq!(batcher.call("solo".into()).await.as_deref(), Some("solo!"));
        // Only the run's own 20 ms, no linger.
        assert!(started.elapsed() < std::time::Duration::from_millis(500));
        assert_eq!(seen.lock().unwrap_or_else(|p| p.into_inner()).len(), 1);
    }
}

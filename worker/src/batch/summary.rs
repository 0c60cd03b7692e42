//! What a batch run did: the counts it prints, and its metric lines.

/// What a batch run did (a resumed run counts what it did itself).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BatchSummary {
    /// PDFs listed.
    pub listed: u64,
    /// Selected (no current label).
    pub selected: u64,
    /// Already staged by the interrupted run this one resumed.
    pub resumed: u64,
    /// Staged as batch records now.
    pub staged: u64,
    /// Recorded without a model (failed extraction, missing, too large,
    /// or labeled meanwhile).
    pub recorded: u64,
    /// Jobs created by this run.
    pub jobs_created: u64,
    /// Labels written from batch answers.
    pub labeled: u64,
    /// Batch answers not written: an equal or newer record was there.
    pub superseded: u64,
    /// Error records (sent on-demand).
    pub error_records: u64,
    /// Answers that were no category, re-asked on-demand here.
    pub reasked: u64,
    /// Documents recorded `failed` after the re-ask (no category twice).
    pub failed: u64,
    /// Records a job never processed (sent on-demand).
    pub unprocessed: u64,
    /// Documents in folders below the job minimum (sent on-demand).
    pub below_minimum: u64,
    /// Documents sent to the on-demand queue, all reasons together.
    pub on_demand: u64,
    /// Tokens of the answers written (batch answers and re-asks).
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Cost of the answers written: batch price, plus on-demand for re-asks, USD.
    pub cost_usd: f64,
}

impl BatchSummary {
    /// The pool's counters for the same outcomes, for metric lines.
    pub(super) fn events(&self) -> crate::events::Summary {
        crate::events::Summary {
            labeled: self.labeled,
            failed: self.failed,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cost_usd: self.cost_usd,
            ..Default::default()
        }
    }
}

impl std::fmt::Display for BatchSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "listed {} / selected {} / staged {} / staged by the interrupted run {} / recorded without a model {} / jobs created {} / labeled {} / re-asked {} / failed after the re-ask {} / already stored {} / on-demand {} (error records {}, unprocessed {}, below the job minimum {}) / cost ${:.6}",
            self.listed,
            self.selected,
            self.staged,
            self.resumed,
            self.recorded,
            self.jobs_created,
            self.labeled,
            self.reasked,
            self.failed,
            self.superseded,
            self.on_demand,
            self.error_records,
            self.unprocessed,
            self.below_minimum,
            self.cost_usd
        )
    }
}

//! USD prices per million tokens for known Bedrock models, to fill `cost_usd`.

/// On-demand price of a model, USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    /// Per million input tokens.
    pub input_per_mtok: f64,
    /// Per million output tokens.
    pub output_per_mtok: f64,
}

impl Price {
    /// Cost of one document's calls.
    pub fn cost(&self, input_tokens: u64, output_tokens: u64) -> f64 {
        (input_tokens as f64 * self.input_per_mtok + output_tokens as f64 * self.output_per_mtok)
            / 1_000_000.0
    }

    /// The batch inference price of the same model: Bedrock bills batch
    /// jobs at 50% of on-demand for the models that offer them.
    pub fn batch(self) -> Price {
        Price {
            input_per_mtok: self.input_per_mtok * BATCH_SHARE,
            output_per_mtok: self.output_per_mtok * BATCH_SHARE,
        }
    }
}

/// Share of the on-demand price a batch inference job is billed.
pub const BATCH_SHARE: f64 = 0.5;

/// Model id prefixes (without region or inference-profile prefix) and their
/// on-demand prices (us-east-1, published list prices).
const PRICES: &[(&str, f64, f64)] = &[
    ("anthropic.claude-haiku-4-5", 1.00, 5.00),
    ("anthropic.claude-3-5-haiku", 0.80, 4.00),
    ("anthropic.claude-3-haiku", 0.25, 1.25),
    ("anthropic.claude-sonnet-4-5", 3.00, 15.00),
    ("anthropic.claude-sonnet-4", 3.00, 15.00),
    ("amazon.nova-micro", 0.035, 0.14),
    ("amazon.nova-lite", 0.06, 0.24),
    ("amazon.nova-pro", 0.80, 3.20),
    ("meta.llama3-1-8b-instruct", 0.22, 0.22),
    ("mistral.mistral-small", 1.00, 3.00),
];

/// The price of a model or inference profile id, e.g.
/// `us.anthropic.claude-haiku-4-5-20251001-v1:0` or a foundation-model ARN.
pub fn price_for(model_id: &str) -> Option<Price> {
    let id = model_id.rsplit('/').next().unwrap_or(model_id);
    let id = [
        "us.", "eu.", "apac.", "global.", "jp.", "au.", "us-gov.", "ca.",
    ]
    .iter()
    .find_map(|p| id.strip_prefix(p))
    .unwrap_or(id);
    PRICES
        .iter()
        .find(|(prefix, _, _)| id.starts_with(prefix))
        .map(|&(_, input_per_mtok, output_per_mtok)| Price {
            input_per_mtok,
            output_per_mtok,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_ids_with_any_prefix_have_prices() {
        let haiku = price_for(crate::classify::bedrock::DEFAULT_MODEL_ID).unwrap();
        assert_eq!(
            haiku,
            Price {
                input_per_mtok: 1.0,
                output_per_mtok: 5.0
            }
        );
        assert_eq!(
            price_for("anthropic.claude-haiku-4-5-20251001-v1:0"),
            Some(haiku)
        );
        assert_eq!(
            price_for("arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-micro-v1:0")
                .unwrap()
                .input_per_mtok,
            0.035
        );
        assert_eq!(
            price_for("eu.anthropic.claude-3-haiku-20240307-v1:0")
                .unwrap()
                .output_per_mtok,
            1.25
        );
        assert!(price_for("local:something").is_none());
        assert!((haiku.cost(1_000, 2) - 0.00101).abs() < 1e-12);
    }
}

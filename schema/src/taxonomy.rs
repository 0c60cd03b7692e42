//! The categories a document is sorted into.
//!
//! The default taxonomy has eight single-word categories. A TOML file replaces it:
//!
//! ```toml
//! [[category]]
//! name = "invoice"
//! description = "a bill that asks for payment of goods or services"
//!
//! [[category]]
//! name = "other"
//! description = "anything else"
//! ```

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One category: a single lowercase word and the one-line description the prompt shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Category {
    /// The label stored in the table: one lowercase word (`a-z`, `0-9`, `_`, `-`).
    pub name: String,
    /// One line telling the model what belongs here.
    pub description: String,
}

/// An ordered, validated list of categories.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Taxonomy {
    #[serde(rename = "category")]
    categories: Vec<Category>,
}

/// Why a taxonomy file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum TaxonomyError {
    #[error("cannot read taxonomy file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("taxonomy file {path} is not valid TOML of the form [[category]] name = \"...\" description = \"...\"")]
    Toml {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("a taxonomy needs at least 2 categories, found {found}")]
    TooFew { found: usize },
    #[error("category #{index} name {name:?} is not a single lowercase word (letters, digits, '_' or '-', starting with a letter)")]
    BadName { index: usize, name: String },
    #[error("category {name:?} appears more than once")]
    Duplicate { name: String },
    #[error("category {name:?} needs a one-line, non-empty description")]
    BadDescription { name: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaxonomyFile {
    category: Vec<Category>,
}

const DEFAULT: &[(&str, &str)] = &[
    ("invoice", "a bill asking for payment: seller, buyer, line items, amounts due, invoice number, payment terms"),
    ("receipt", "proof of a payment already made: till or card receipt, payment confirmation, paid order summary"),
    ("contract", "an agreement between parties: terms, obligations, clauses and signatures (NDA, lease, service or sales agreement)"),
    ("resume", "a CV or resume: one person's education, work experience and skills"),
    ("letter", "correspondence addressed to a person or organisation, with a salutation and a sign-off"),
    ("form", "a form with fields or boxes to fill in: application, tax form, questionnaire, registration"),
    ("report", "a report, study, research paper, article, statistics or presentation slides that present information or findings"),
    ("manual", "a manual, guide, handbook, book or technical documentation explaining how to use or do something"),
];

impl Default for Taxonomy {
    fn default() -> Self {
        Taxonomy {
            categories: DEFAULT
                .iter()
                .map(|(name, description)| Category {
                    name: (*name).to_owned(),
                    description: (*description).to_owned(),
                })
                .collect(),
        }
    }
}

impl Taxonomy {
    /// Builds a taxonomy from categories, checking every rule a file must follow.
    pub fn new(categories: Vec<Category>) -> Result<Self, TaxonomyError> {
        if categories.len() < 2 {
            return Err(TaxonomyError::TooFew {
                found: categories.len(),
            });
        }
        let mut seen = HashSet::new();
        for (i, c) in categories.iter().enumerate() {
            if !is_single_word(&c.name) {
                return Err(TaxonomyError::BadName {
                    index: i + 1,
                    name: c.name.clone(),
                });
            }
            if !seen.insert(c.name.as_str()) {
                return Err(TaxonomyError::Duplicate {
                    name: c.name.clone(),
                });
            }
            let d = c.description.trim();
            if d.is_empty() || d.contains('\n') {
                return Err(TaxonomyError::BadDescription {
                    name: c.name.clone(),
                });
            }
        }
        Ok(Taxonomy { categories })
    }

    /// Parses TOML text (`[[category]]` tables with `name` and `description`).
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, TaxonomyError> {
        let file: TaxonomyFile = toml::from_str(text).map_err(|source| TaxonomyError::Toml {
            path: path.to_owned(),
            source,
        })?;
        Self::new(file.category)
    }

    /// Reads and validates a taxonomy file.
    pub fn from_file(path: &Path) -> Result<Self, TaxonomyError> {
        let text = std::fs::read_to_string(path).map_err(|source| TaxonomyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// The default taxonomy, or the one in `path` when given.
    pub fn load(path: Option<&Path>) -> Result<Self, TaxonomyError> {
        path.map_or_else(|| Ok(Self::default()), Self::from_file)
    }

    /// The categories, in prompt order.
    pub fn categories(&self) -> &[Category] {
        &self.categories
    }

    /// The category with exactly this name.
    pub fn get(&self, name: &str) -> Option<&Category> {
        self.categories.iter().find(|c| c.name == name)
    }

    /// Category names joined with ", ".
    pub fn names(&self) -> String {
        self.categories
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn is_single_word(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Taxonomy, TaxonomyError> {
        Taxonomy::from_toml(text, Path::new("t.toml"))
    }

    #[test]
    fn default_has_the_eight_categories() {
        let t = Taxonomy::default();
        assert_eq!(
            t.names(),
            "invoice, receipt, contract, resume, letter, form, report, manual"
        );
        assert!(Taxonomy::new(t.categories().to_vec()).is_ok());
        assert!(t
            .get("report")
            .unwrap()
            .description
            .contains("research paper"));
    }

    #[test]
    fn file_replaces_default() {
        let t = parse("[[category]]\nname='bill'\ndescription='a bill'\n[[category]]\nname='other'\ndescription='the rest'\n").unwrap();
        assert_eq!(t.names(), "bill, other");
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let one = "[[category]]\nname='a'\ndescription='x'\n";
        assert!(matches!(
            parse(one),
            Err(TaxonomyError::TooFew { found: 1 })
        ));
        let dup =
            "[[category]]\nname='a'\ndescription='x'\n[[category]]\nname='a'\ndescription='y'\n";
        assert!(matches!(parse(dup), Err(TaxonomyError::Duplicate { name }) if name == "a"));
        let two_words = "[[category]]\nname='tax form'\ndescription='x'\n[[category]]\nname='b'\ndescription='y'\n";
        let err = parse(two_words).unwrap_err();
        assert!(matches!(err, TaxonomyError::BadName { index: 1, .. }));
        assert!(err.to_string().contains("tax form"));
        let upper = "[[category]]\nname='Invoice'\ndescription='x'\n[[category]]\nname='b'\ndescription='y'\n";
        assert!(matches!(parse(upper), Err(TaxonomyError::BadName { .. })));
        let empty =
            "[[category]]\nname='a'\ndescription=' '\n[[category]]\nname='b'\ndescription='y'\n";
        assert!(matches!(
            parse(empty),
            Err(TaxonomyError::BadDescription { .. })
        ));
        let unknown = "[[category]]\nname='a'\ndescription='x'\nlabel='y'\n";
        assert!(matches!(parse(unknown), Err(TaxonomyError::Toml { .. })));
        assert!(matches!(
            Taxonomy::from_file(Path::new("/nonexistent/t.toml")),
            Err(TaxonomyError::Read { .. })
        ));
    }
}

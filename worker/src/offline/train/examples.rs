//! Labeled examples for `train`: a folder with one subfolder of PDFs per
//! category, a manifest TSV (`file` and `category` columns, `file` relative
//! to the manifest; `source_repo` groups the folds, `licence` goes into the
//! head's provenance), or a labeled JSONL of texts (`{"id","label","text"}`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{TrainError, MIN_PER_CATEGORY};

/// One labeled example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// The file, or the JSONL id.
    pub id: String,
    /// Its category (after aliases).
    pub category: String,
    /// Its source (folds keep a source together), when known.
    pub group: Option<String>,
    /// Index of the set it came from in [`ExampleSet::sources`].
    pub source: usize,
    /// Its licence, when the manifest says.
    pub licence: Option<String>,
    /// A PDF to extract, or a text.
    pub input: Input,
}

impl Example {
    /// What the input is, for the feature cache's key: `pdf` or `text`.
    pub fn kind(&self) -> &'static str {
        match self.input {
            Input::Pdf(_) => "pdf",
            Input::Text(_) => "text",
        }
    }

    /// The input's bytes: the PDF file's, or the text's.
    pub fn bytes(&self) -> Result<Vec<u8>, TrainError> {
        match &self.input {
            Input::Pdf(path) => std::fs::read(path).map_err(|source| TrainError::Read {
                path: path.clone(),
                source,
            }),
            Input::Text(text) => Ok(text.as_bytes().to_vec()),
        }
    }
}

/// What an example gives the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A PDF file.
    Pdf(PathBuf),
    /// A document's text.
    Text(String),
}

/// The examples of every set given.
#[derive(Debug, Clone, Default)]
pub struct ExampleSet {
    pub examples: Vec<Example>,
    /// The sets, as given.
    pub sources: Vec<String>,
    /// Examples of categories outside the taxonomy, by category (not used).
    pub skipped: BTreeMap<String, usize>,
}

/// Reads the examples of `paths` for `categories`; `aliases` rename
/// categories first (`scientific paper` -> `report`); `group_by` names the
/// manifest column that groups the folds (default `source_repo`).
pub fn read_examples(
    paths: &[PathBuf],
    categories: &[String],
    aliases: &BTreeMap<String, String>,
    group_by: Option<&str>,
) -> Result<ExampleSet, TrainError> {
    let mut set = ExampleSet::default();
    for path in paths {
        let source = set.sources.len();
        set.sources.push(path.display().to_string());
        let mut add = |id: String,
                       category: &str,
                       group: Option<String>,
                       licence: Option<String>,
                       input: Input| {
            let category = aliases
                .get(category)
                .cloned()
                .unwrap_or_else(|| category.to_owned());
            if categories.contains(&category) {
                set.examples.push(Example {
                    id,
                    category,
                    group,
                    source,
                    licence,
                    input,
                });
            } else {
                *set.skipped.entry(category).or_default() += 1;
            }
        };
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| TrainError::Read {
                path: p.to_owned(),
                source,
            })
        };
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if path.is_dir() {
            let mut folders: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|source| TrainError::Read {
                    path: path.clone(),
                    source,
                })?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect();
            folders.sort();
            for folder in folders {
                let category = folder
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let files = crate::offline::files::collect_pdfs(std::slice::from_ref(&folder))
                    .map_err(|source| TrainError::Read {
                        path: folder.clone(),
                        source,
                    })?;
                for file in files {
                    add(
                        file.display().to_string(),
                        &category,
                        None,
                        None,
                        Input::Pdf(file),
                    );
                }
            }
        } else if extension == "tsv" {
            let text = read(path)?;
            let mut lines = text.lines();
            let header: Vec<&str> = lines.next().unwrap_or("").split('\t').collect();
            let column = |name: &str| header.iter().position(|h| *h == name);
            let missing = |name: &str| TrainError::Manifest {
                path: path.clone(),
                message: format!(
                    "no {name:?} column in the header (columns: {})",
                    header.join(", ")
                ),
            };
            let file_col = column("file").ok_or_else(|| missing("file"))?;
            let category_col = column("category").ok_or_else(|| missing("category"))?;
            let group_col = match group_by {
                Some(name) => Some(column(name).ok_or_else(|| missing(name))?),
                None => column("source_repo"),
            };
            let licence_col = column("licence");
            let root = path.parent().unwrap_or(Path::new("."));
            for line in lines.filter(|l| !l.trim().is_empty()) {
                let cells: Vec<&str> = line.split('\t').collect();
                let cell = |i: Option<usize>| {
                    i.and_then(|i| cells.get(i))
                        .map(|c| c.trim().to_owned())
                        .filter(|c| !c.is_empty())
                };
                let (Some(file), Some(category)) = (cell(Some(file_col)), cell(Some(category_col)))
                else {
                    continue;
                };
                add(
                    file.clone(),
                    &category,
                    cell(group_col),
                    cell(licence_col),
                    Input::Pdf(root.join(file)),
                );
            }
        } else if extension == "jsonl" {
            for ex in crate::offline::eval::read_dataset(path)? {
                add(ex.id, &ex.label, None, None, Input::Text(ex.text));
            }
        } else {
            return Err(TrainError::Kind { path: path.clone() });
        }
    }
    Ok(set)
}

/// Refuses a taxonomy with a category that has too few examples.
pub fn check_counts(categories: &[String], labels: &[usize]) -> Result<(), TrainError> {
    for (c, name) in categories.iter().enumerate() {
        let found = labels.iter().filter(|&&l| l == c).count();
        if found < MIN_PER_CATEGORY {
            return Err(TrainError::TooFew {
                category: name.clone(),
                found,
                needed: MIN_PER_CATEGORY,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_category_with_too_few_examples_is_refused_by_name() {
        let categories = vec!["invoice".to_owned(), "receipt".to_owned()];
        let e = check_counts(&categories, &[0, 0, 0, 0, 1, 1]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "category \"receipt\" has 2 usable example(s); a head needs at least 4 of each category to learn it from: add 2 more, or drop the category from the taxonomy"
        );
        assert!(check_counts(&categories, &[0, 0, 0, 0, 1, 1, 1, 1]).is_ok());
    }

    #[test]
    fn manifests_folders_and_jsonl_are_read_with_aliases_and_groups() {
        let dir = std::env::temp_dir().join(format!("docsort-train-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("set/invoice")).unwrap();
        std::fs::write(dir.join("set/invoice/a.pdf"), b"%PDF").unwrap();
        std::fs::write(
            dir.join("m.tsv"),
            "file\tsource_repo\tlicence\tcategory\nx.pdf\torg/r\tMIT\tscientific paper\ny.pdf\torg/s\tMIT\tslides\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("t.jsonl"),
            "{\"id\":\"1\",\"label\":\"invoice\",\"text\":\"Total due\"}\n",
        )
        .unwrap();
        let categories = vec!["invoice".to_owned(), "report".to_owned()];
        let aliases = BTreeMap::from([("scientific paper".to_owned(), "report".to_owned())]);
        let set = read_examples(
            &[dir.join("set"), dir.join("m.tsv"), dir.join("t.jsonl")],
            &categories,
            &aliases,
            None,
        )
        .unwrap();
        let got: Vec<(&str, Option<&str>)> = set
            .examples
            .iter()
            .map(|e| (e.category.as_str(), e.group.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("invoice", None),
                ("report", Some("org/r")),
                ("invoice", None)
            ]
        );
        assert_eq!(set.examples[1].licence.as_deref(), Some("MIT"));
        assert_eq!(set.skipped, BTreeMap::from([("slides".to_owned(), 1)]));
        // A group column only matters for manifests.
        assert!(read_examples(&[dir.join("t.jsonl")], &categories, &aliases, Some("team")).is_ok());
        assert!(matches!(
            read_examples(&[dir.join("m.tsv")], &categories, &aliases, Some("team")),
            Err(TrainError::Manifest { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

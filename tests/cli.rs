//! End-to-end tests of the `fer-lab` binary on the mini FER-2013 sample in tests/fixtures.

use fer_lab::data::{Layout, Split, cache};
use fer_lab::emotion::Emotion;
use serde_json::Value;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn mini() -> PathBuf {
    fixtures().join("fer2013-mini")
}

fn fer_lab(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fer-lab"))
        .args(args)
        .current_dir(dir)
        .env_remove("FER_LAB_DB")
        .output()
        .expect("fer-lab runs")
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = fer_lab(dir, args);
    assert!(
        out.status.success(),
        "fer-lab {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail; returns its stderr.
fn fails(dir: &Path, args: &[&str]) -> String {
    let out = fer_lab(dir, args);
    assert!(!out.status.success(), "fer-lab {args:?} should have failed");
    assert_ne!(out.status.code(), Some(0));
    String::from_utf8(out.stderr).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let target = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            fs::create_dir_all(&target).unwrap();
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The pixels of a JPEG in the fixtures, decoded as the importer does.
fn pixels_of(path: &Path) -> Vec<u8> {
    image::open(path).unwrap().to_luma8().into_raw()
}

fn find_label(cache_dir: &Path, split: Split, pixels: &[u8]) -> Option<Emotion> {
    let data = cache::read(cache_dir).unwrap();
    let images = data.split(split);
    (0..images.len())
        .find(|&i| images.image(i).as_slice() == pixels)
        .map(|i| images.label(i))
}

#[test]
fn imports_every_layout_with_labels_by_folder_name() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    // A known image in each folder must land in its class (neutral is id 6, not 4).
    let neutral = fs::read_dir(mini().join("train/neutral"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let sad = fs::read_dir(mini().join("test/sad"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();

    // 1. The canonical three-split tree.
    let out = ok(
        t,
        &["data", "import", mini().to_str().unwrap(), "--out", "tree"],
    );
    assert!(out.contains("train/ validation/ test/"), "{out}");
    assert!(out.contains("│ train ┆    40 ┆"), "{out}");
    assert!(out.contains("differ from canonical FER-2013"), "{out}");
    let data = cache::read(&t.join("tree")).unwrap();
    assert_eq!(data.manifest.layout, Layout::ThreeSplitTree);
    assert!(data.manifest.test_is_private_test);
    assert_eq!(
        [data.train.len(), data.val.len(), data.test.len()],
        [280, 70, 70]
    );
    assert_eq!(
        find_label(&t.join("tree"), Split::Train, &pixels_of(&neutral)),
        Some(Emotion::Neutral)
    );
    assert_eq!(
        find_label(&t.join("tree"), Split::Test, &pixels_of(&sad)),
        Some(Emotion::Sad)
    );

    // 2. The Kaggle CSV.
    let csv = fixtures().join("fer2013-mini.csv");
    let out = ok(
        t,
        &["data", "import", csv.to_str().unwrap(), "--out", "csv"],
    );
    assert!(out.contains("Kaggle challenge CSV"), "{out}");
    let from_csv = cache::read(&t.join("csv")).unwrap();
    assert_eq!(from_csv.manifest.counts, data.manifest.counts);

    // 3. Kaggle "FER-2013": train/ and a test/ that merges both test splits.
    let kaggle = t.join("kaggle/fer2013");
    copy_dir(&mini().join("train"), &kaggle.join("train"));
    copy_dir(&mini().join("validation"), &kaggle.join("test"));
    copy_dir(&mini().join("test"), &kaggle.join("test"));
    let out = ok(t, &["data", "import", "kaggle", "--out", "kaggle-cache"]);
    assert!(out.contains("val carved out of train"), "{out}");
    assert!(out.contains("not PrivateTest numbers"), "{out}");
    let k = cache::read(&t.join("kaggle-cache")).unwrap();
    assert_eq!(k.manifest.layout, Layout::KaggleTrainTestTree);
    assert!(!k.manifest.test_is_private_test);
    assert_eq!([k.train.len(), k.val.len(), k.test.len()], [252, 28, 140]);
    assert!(
        k.val.class_counts().iter().all(|&n| n == 4),
        "stratified carve"
    );

    // 4. Face Expression Recognition Dataset: images/train and images/validation.
    let fer = t.join("fed/images");
    copy_dir(&mini().join("train"), &fer.join("train"));
    copy_dir(&mini().join("validation"), &fer.join("validation"));
    let out = ok(t, &["data", "import", "fed", "--out", "fed-cache"]);
    assert!(out.contains("Face Expression Recognition"), "{out}");
    let f = cache::read(&t.join("fed-cache")).unwrap();
    assert_eq!(f.manifest.layout, Layout::FaceExpressionTree);
    assert_eq!(f.test.len(), 70);

    // 5. The same tree as .zip and .tar.gz, read directly.
    let zip_path = t.join("mini.zip");
    let mut zip = zip::ZipWriter::new(fs::File::create(&zip_path).unwrap());
    for entry in walkdir::WalkDir::new(mini()) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            let rel = entry
                .path()
                .strip_prefix(fixtures())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            zip.start_file(rel, zip::write::SimpleFileOptions::default())
                .unwrap();
            zip.write_all(&fs::read(entry.path()).unwrap()).unwrap();
        }
    }
    zip.finish().unwrap();
    ok(t, &["data", "import", "mini.zip", "--out", "zip-cache"]);
    let tgz_path = t.join("mini.tar.gz");
    let gz = flate2::write::GzEncoder::new(
        fs::File::create(&tgz_path).unwrap(),
        flate2::Compression::fast(),
    );
    let mut tar = tar::Builder::new(gz);
    tar.append_dir_all("fer2013", mini()).unwrap();
    tar.into_inner().unwrap().finish().unwrap();
    ok(t, &["data", "import", "mini.tar.gz", "--out", "tgz-cache"]);
    for dir in ["zip-cache", "tgz-cache"] {
        let other = cache::read(&t.join(dir)).unwrap();
        assert_eq!(
            other.manifest.fingerprint, data.manifest.fingerprint,
            "{dir}"
        );
    }
}

#[test]
fn bad_sources_get_one_clear_error_and_leave_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let no_cache = |name: &str| {
        assert!(!t.join(name).exists(), "{name} was half-written");
        let leftovers: Vec<_> = fs::read_dir(t)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
    };

    let err = fails(t, &["data", "import", "missing-dir", "--out", "c1"]);
    assert!(err.contains("missing-dir"), "{err}");
    no_cache("c1");

    fs::write(t.join("wrong.csv"), "label,data\n1,2\n").unwrap();
    let err = fails(t, &["data", "import", "wrong.csv", "--out", "c2"]);
    assert!(err.contains("wrong.csv") && err.contains("header"), "{err}");
    no_cache("c2");

    let good = fs::read_to_string(fixtures().join("fer2013-mini.csv")).unwrap();
    let mut lines: Vec<String> = good.lines().map(String::from).collect();
    let fields: Vec<&str> = lines[5].split(',').collect();
    let short: Vec<&str> = fields[1].split(' ').take(2000).collect();
    lines[5] = format!("{},{},{}", fields[0], short.join(" "), fields[2]);
    fs::write(t.join("short.csv"), lines.join("\n")).unwrap();
    let err = fails(t, &["data", "import", "short.csv", "--out", "c3"]);
    assert!(
        err.contains("line 6") && err.contains("2000 pixels"),
        "{err}"
    );
    no_cache("c3");

    let tree = t.join("tree");
    copy_dir(&mini(), &tree);
    fs::write(tree.join("train/happy/corrupt.jpg"), b"\xff\xd8garbage").unwrap();
    let err = fails(t, &["data", "import", "tree", "--out", "c4"]);
    assert!(err.contains("corrupt.jpg"), "{err}");
    no_cache("c4");

    fs::remove_file(tree.join("train/happy/corrupt.jpg")).unwrap();
    image::GrayImage::new(64, 64)
        .save(tree.join("train/happy/big.png"))
        .unwrap();
    let err = fails(t, &["data", "import", "tree", "--out", "c5"]);
    assert!(
        err.contains("big.png") && err.contains("64×64") && err.contains("--resize"),
        "{err}"
    );
    no_cache("c5");
    ok(t, &["data", "import", "tree", "--out", "c5", "--resize"]);

    fs::remove_file(tree.join("train/happy/big.png")).unwrap();
    fs::create_dir_all(tree.join("validation/fear-empty")).unwrap();
    let err = fails(t, &["data", "import", "tree", "--out", "c6"]);
    assert!(err.contains("validation/fear-empty"), "{err}");
    fs::remove_dir(tree.join("validation/fear-empty")).unwrap();
    for f in fs::read_dir(tree.join("test/disgust")).unwrap() {
        fs::remove_file(f.unwrap().path()).unwrap();
    }
    let err = fails(t, &["data", "import", "tree", "--out", "c6"]);
    assert!(
        err.contains("test/disgust") && err.contains("empty"),
        "{err}"
    );
    no_cache("c6");
}

fn write_sweep(dir: &Path, name: &str, body: &str) -> String {
    let file = format!("{name}.toml");
    fs::write(dir.join(&file), body).unwrap();
    file
}

#[test]
fn bad_sweep_files_are_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let data = mini();
    let data = data.to_str().unwrap();
    let cases = [
        (
            "unknown",
            format!("data = \"{data}\"\n[base]\nepochs = 1\nlearning_rate = 0.1\n"),
            "line 4",
        ),
        (
            "badtype",
            format!("data = \"{data}\"\n[base]\nepochs = \"ten\"\n"),
            "epochs",
        ),
        (
            "neglr",
            format!("data = \"{data}\"\n[base]\nlr = -0.001\n"),
            "lr = -0.001",
        ),
        (
            "dropout",
            format!("data = \"{data}\"\n[grid]\ndropout = [0.5, 1.0]\n"),
            "line 3",
        ),
        (
            "zero",
            format!("data = \"{data}\"\n[grid]\nlr = []\n"),
            "zero runs",
        ),
        (
            "epochs",
            format!("data = \"{data}\"\n[base]\nepochs = 0\n"),
            "epochs = 0",
        ),
        ("nodata", "data = \"nowhere\"\n".to_string(), "nowhere"),
    ];
    for (name, body, expected) in cases {
        let file = write_sweep(t, name, &body);
        let err = fails(t, &["sweep", &file, "--db", "db.sqlite"]);
        assert!(
            err.contains(expected) && err.contains(if name == "nodata" { "" } else { &file }),
            "{name}: {err}"
        );
        assert!(
            !t.join("db.sqlite").exists(),
            "{name}: database created for a bad sweep"
        );
    }
    let err = fails(t, &["sweep", "missing.toml"]);
    assert!(err.contains("missing.toml"), "{err}");
}

#[test]
fn a_two_run_sweep_lands_in_sqlite_and_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    ok(
        t,
        &[
            "data",
            "import",
            mini().to_str().unwrap(),
            "--out",
            "data/mini",
        ],
    );
    let file = write_sweep(
        t,
        "tiny",
        "name = \"tiny\"\ndata = \"data/mini\"\nseeds = [7]\n[base]\nepochs = 3\nbatch_size = 32\n[grid]\nlr = [0.001, 0.0005]\n",
    );
    let dry = ok(t, &["sweep", &file, "--dry-run", "--set", "epochs=1"]);
    assert!(dry.contains("2 runs") && dry.contains("new"), "{dry}");
    assert!(!t.join("results").exists(), "a dry run writes nothing");

    let out = ok(t, &["sweep", &file, "--set", "epochs=1", "--device", "cpu"]);
    assert!(out.contains("2 trained"), "{out}");
    let db = t.join("results/fer-lab.sqlite");
    assert!(db.is_file());

    let count = |sql: &str| -> i64 {
        let out = ok(t, &["sql", sql, "--format", "json"]);
        let rows: Value = serde_json::from_str(&out).unwrap();
        rows[0]["n"].as_i64().unwrap()
    };
    assert_eq!(
        count("SELECT count(*) AS n FROM runs WHERE status = 'done'"),
        2
    );
    assert_eq!(
        count(
            "SELECT count(*) AS n FROM epochs WHERE val_acc IS NOT NULL AND train_loss IS NOT NULL"
        ),
        2
    );
    assert_eq!(count("SELECT count(*) AS n FROM evals"), 4);
    // Every image's class probabilities, for ensembles: 70 val and 70 test images per run.
    assert_eq!(
        count("SELECT count(*) AS n FROM predictions WHERE length(probs) = 14 * n AND n = 70"),
        4
    );
    assert_eq!(count("SELECT count(*) AS n FROM class_metrics"), 28);
    assert_eq!(
        count("SELECT count(*) AS n FROM confusion WHERE split = 'test'"),
        98
    );
    assert_eq!(
        count("SELECT sum(count) AS n FROM confusion WHERE split = 'test'"),
        140
    );
    assert_eq!(
        count("SELECT count(*) AS n FROM run_params WHERE key = 'lr'"),
        2
    );
    assert_eq!(
        count("SELECT count(DISTINCT epochs_done) AS n FROM runs WHERE epochs_done = 1"),
        1
    );

    // Each run keeps its best-on-val model.
    let dirs: Vec<_> = fs::read_dir(t.join("results/tiny")).unwrap().collect();
    assert_eq!(dirs.len(), 2);
    for d in dirs {
        assert!(d.unwrap().path().join("best.bpk").is_file());
    }

    // One row per run with --runs.
    let report = ok(t, &["report", "--runs", "--format", "json"]);
    let rows: Value = serde_json::from_str(&report).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2);
    assert_eq!(rows[0]["rank"], 1);
    assert!(rows[0]["val_acc"].as_f64().unwrap() >= rows[1]["val_acc"].as_f64().unwrap());
    assert!(rows[0]["lr"].is_number());
    let table = ok(t, &["report", "--runs", "--sweep", "tiny"]);
    assert!(
        table.contains("test_acc") && table.contains("lr"),
        "{table}"
    );
    let md = ok(t, &["report", "--runs", "--format", "markdown"]);
    assert!(md.starts_with("| rank | run | lr |"), "{md}");
    let csv = ok(t, &["report", "--runs", "--format", "csv"]);
    assert_eq!(csv.lines().count(), 3, "{csv}");
    // The default report: cells, effects, the best cell's classes and confusion matrix.
    let report: Value = serde_json::from_str(&ok(t, &["report", "--format", "json"])).unwrap();
    assert_eq!(report["cells"].as_array().unwrap().len(), 2);
    assert_eq!(report["cells"][0]["vs best"], "best");
    assert_eq!(report["effects"].as_array().unwrap().len(), 2);
    assert_eq!(report["confusion"].as_array().unwrap().len(), 7);
    ok(t, &["report", "--format", "markdown", "--out", "report.md"]);
    let md = fs::read_to_string(t.join("report.md")).unwrap();
    assert!(md.starts_with("# Report of sweep `tiny`"), "{md}");
    let err = fails(t, &["report", "--metric", "test_acc"]);
    assert!(err.contains("test_acc") && err.contains("val_acc"), "{err}");
    let runs = ok(t, &["runs"]);
    assert!(runs.contains("done") && runs.contains("1/1"), "{runs}");

    let err = fails(t, &["sql", "DELETE FROM runs"]);
    assert!(err.contains("read-only"), "{err}");
    assert_eq!(count("SELECT count(*) AS n FROM runs"), 2);
    let err = fails(t, &["report", "--sweep", "nope"]);
    assert!(err.contains("nope") && err.contains("tiny"), "{err}");

    // Every example query of the README runs and returns rows.
    let readme =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let queries: Vec<&str> = readme
        .split("```sql\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap())
        .collect();
    assert!(
        queries.len() >= 10,
        "README has {} SQL examples",
        queries.len()
    );
    for query in queries {
        let out = ok(t, &["sql", query, "--format", "json"]);
        let rows: Value = serde_json::from_str(&out).unwrap();
        assert!(
            !rows.as_array().unwrap().is_empty(),
            "no rows from README query:\n{query}"
        );
    }

    // Figures: PNG and SVG of the expected size; the HTML report embeds them with the tables.
    ok(t, &["report", "--plots", "figures"]);
    for name in ["curves", "effect-lr", "confusion", "class-f1"] {
        let png = image::open(t.join(format!("figures/{name}.png"))).unwrap();
        assert_eq!((png.width(), png.height()), (960, 600), "{name}.png");
        let svg = fs::read_to_string(t.join(format!("figures/{name}.svg"))).unwrap();
        assert!(
            svg.contains("<svg") && svg.contains("width=\"960\""),
            "{name}.svg"
        );
    }
    ok(t, &["report", "--format", "html", "--out", "report.html"]);
    let html = fs::read_to_string(t.join("report.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    assert_eq!(html.matches("<svg").count(), 4, "four inline figures");
    assert!(
        html.contains("<table>") && html.contains("Welch"),
        "tables and notes"
    );
    assert!(!html.contains("<?xml"), "no XML declarations inside HTML");

    // Two runs side by side: metrics, the config keys that differ, per-class F1.
    let ids: Vec<String> = ok(
        t,
        &["sql", "SELECT id FROM runs ORDER BY id", "--format", "csv"],
    )
    .lines()
    .skip(1)
    .map(String::from)
    .collect();
    let cmp: Value = serde_json::from_str(&ok(
        t,
        &[
            "report",
            "--compare",
            &ids[0][..6],
            &ids[1],
            "--format",
            "json",
        ],
    ))
    .unwrap();
    assert_eq!(cmp["config_keys_that_differ"][0]["key"], "lr", "{cmp}");
    assert_eq!(cmp["per-class_F1"].as_array().unwrap().len(), 7, "{cmp}");
    let err = fails(t, &["report", "--compare", "tiny", &ids[0]]);
    assert!(err.contains("two sweeps or two runs"), "{err}");

    // predict: the best run classifies a real test image; the seven probabilities sum to 1.
    let image = fs::read_dir(mini().join("test/happy"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let image = image.to_str().unwrap();
    let out: Value =
        serde_json::from_str(&ok(t, &["predict", image, "--best", "--format", "json"])).unwrap();
    let row = &out[0];
    let sum: f64 = [
        "Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral",
    ]
    .iter()
    .map(|e| row[*e].as_f64().unwrap())
    .sum();
    assert!((sum - 1.0).abs() < 1e-3, "{row}");
    assert!(row["emotion"].is_string());
    // Ensembles: the two cells soft-voted from the stored probabilities, and predict with the
    // same members.
    let report: Value =
        serde_json::from_str(&ok(t, &["report", "--ensemble", "2", "--format", "json"])).unwrap();
    let ensemble = report["ensemble"].as_array().unwrap();
    assert_eq!(ensemble.len(), 3, "best run, top 1, top 2: {report}");
    assert_eq!(ensemble[2]["runs"], 2);
    // The top cell's ensemble is its one run: it scores what the run scored (up to an argmax
    // moved by the stored probabilities' rounding, one image in 70).
    let best_val = report["cells"][0]["val_mean"].as_f64().unwrap();
    assert!(
        (ensemble[1]["val_acc"].as_f64().unwrap() - best_val).abs() <= 1.0 / 70.0 + 1e-9,
        "{report}"
    );
    let table = ok(t, &["report", "--ensemble", "2"]);
    assert!(table.contains("Ensembles of the top 1–2 cells"), "{table}");
    let voted: Value = serde_json::from_str(&ok(
        t,
        &["predict", image, "--ensemble", "2", "--format", "json"],
    ))
    .unwrap();
    let sum: f64 = [
        "Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral",
    ]
    .iter()
    .map(|e| voted[0][*e].as_f64().unwrap())
    .sum();
    assert!((sum - 1.0).abs() < 1e-3, "{voted}");
    let ensemble_table = ok(t, &["predict", image, "--ensemble", "2"]);
    assert!(
        ensemble_table.contains("ensemble of 2 runs"),
        "{ensemble_table}"
    );
    let err = fails(t, &["report", "--ensemble", "0"]);
    assert!(err.contains("--ensemble 0"), "{err}");
    let err = fails(t, &["predict", image, "--ensemble", "0"]);
    assert!(err.contains("--ensemble 0"), "{err}");
    let err = fails(t, &["predict", image, "--ensemble", "2", "--run", "abcd"]);
    assert!(err.contains("--ensemble") && err.contains("--run"), "{err}");
    let err = fails(t, &["predict", "README-missing.png", "--best"]);
    assert!(err.contains("README-missing.png"), "{err}");
    fs::write(t.join("not-an-image.jpg"), "hello").unwrap();
    let err = fails(t, &["predict", "not-an-image.jpg"]);
    assert!(
        err.contains("not-an-image.jpg") && err.contains("not a readable image"),
        "{err}"
    );
    let err = fails(t, &["predict", image, "--run", "ffffffff"]);
    assert!(err.contains("no run `ffffffff`"), "{err}");
    // export: the model and a JSON sidecar with what rebuilds it.
    ok(t, &["export", "--best", "--out", "exported/model.bpk"]);
    assert!(t.join("exported/model.bpk").is_file());
    let meta: Value =
        serde_json::from_str(&fs::read_to_string(t.join("exported/model.bpk.json")).unwrap())
            .unwrap();
    assert_eq!(meta["config"]["model"]["kind"], "baseline");
    assert_eq!(meta["classes"][6], "Neutral");

    // Launching the same sweep again trains nothing.
    let again = ok(t, &["sweep", &file, "--set", "epochs=1", "--device", "cpu"]);
    assert!(again.contains("0 trained, 2 already done"), "{again}");
}

#[test]
fn every_model_and_loss_trains_one_epoch_and_lands_in_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let file = write_sweep(
        t,
        "space",
        &format!(
            r#"data = "{}"
[base]
epochs = 1
batch_size = 32
schedule = {{ kind = "cosine", warmup = 0 }}
tta = "hflip"
[base.augment]
erasing = 0.5
mixup = 0.2
[grid]
model = [
  "baseline",
  {{ kind = "compact", channels = [8, 16], dense = [32] }},
  {{ kind = "residual", width = 8, depth = 1 }},
  {{ kind = "attention", width = 8, depth = 1, attention = "se" }},
  {{ kind = "attention", width = 8, depth = 1, attention = "cbam" }},
  {{ kind = "vgg", width = 0.125, dense = [32] }},
]
loss = ["cross_entropy", "weighted_cross_entropy", {{ kind = "focal", gamma = 2.0 }}]
"#,
            mini().display()
        ),
    );
    let out = ok(
        t,
        &[
            "sweep",
            &file,
            "--device",
            "cpu",
            "--set",
            "label_smoothing=0.1",
        ],
    );
    assert!(out.contains("18 trained"), "{out}");
    let rows: Value = serde_json::from_str(&ok(
        t,
        &[
            "sql",
            "SELECT r.model, count(*) AS n, min(r.params) AS params, min(r.flops) AS flops,
                    count(DISTINCT p.value) AS losses
             FROM runs r JOIN run_params p ON p.run_id = r.id AND p.key = 'loss.kind'
             JOIN evals e ON e.run_id = r.id AND e.split = 'test'
             WHERE r.status = 'done' GROUP BY r.model ORDER BY r.model",
            "--format",
            "json",
        ],
    ))
    .unwrap();
    let models: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["model"].as_str().unwrap())
        .collect();
    assert_eq!(
        models,
        ["attention", "baseline", "compact", "residual", "vgg"]
    );
    for row in rows.as_array().unwrap() {
        assert_eq!(row["losses"], 3, "{row}");
        assert!(
            row["params"].as_i64().unwrap() > 0 && row["flops"].as_i64().unwrap() > 0,
            "{row}"
        );
    }
    assert_eq!(rows[0]["n"], 6, "se and cbam");
}

#[test]
fn shipped_sweep_files_parse_and_plan_their_documented_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(root.join("experiments")).unwrap() {
        let path = entry.unwrap().path();
        let text = fs::read_to_string(&path).unwrap();
        // Each file documents its size in a comment: "# Runs: N".
        let documented: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("# Runs: "))
            .unwrap_or_else(|| panic!("{} has no '# Runs: N' line", path.display()))
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        // Plan against the mini data: the plan does not depend on which data it is. A file
        // whose runs compute in bf16 plans on libtorch's CPU; a build without libtorch prints
        // the plan, then refuses the launch in the user's words.
        let sweep = fer_lab::sweep::Sweep::load(&path, &[], None).unwrap();
        let bf16 = sweep.runs.iter().any(|r| !r.config.precision.is_f32());
        let mini = mini();
        let mut args = vec![
            "sweep",
            path.to_str().unwrap(),
            "--dry-run",
            "--data",
            mini.to_str().unwrap(),
        ];
        if bf16 && cfg!(feature = "tch") {
            args.extend(["--devices", "tch-cpu"]);
        }
        let run = fer_lab(tmp.path(), &args);
        let out = String::from_utf8(run.stdout).unwrap();
        let err = String::from_utf8_lossy(&run.stderr);
        if bf16 && !cfg!(feature = "tch") {
            assert_eq!(run.status.code(), Some(2), "{}: {err}", path.display());
            assert!(err.contains("needs a libtorch device"), "{err}");
        } else {
            assert!(run.status.success(), "{}: {out}\n{err}", path.display());
        }
        let planned = format!(
            ": {documented} run{} (",
            if documented == 1 { "" } else { "s" }
        );
        // Its `data` is read from the file's folder, so it plans from any directory.
        if path.ends_with("quickstart.toml") {
            let out = ok(tmp.path(), &["sweep", path.to_str().unwrap(), "--dry-run"]);
            assert!(out.contains(&planned), "{out}");
        }
        assert!(
            out.contains(&planned),
            "{}: documented {documented} runs, planned:\n{out}",
            path.display()
        );
    }
}

fn sha256(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(fs::read(path).unwrap()))
}

/// Every command that only reads, pointed at `db`.
fn readers(db: &str) -> Vec<Vec<String>> {
    let face = fs::read_dir(mini().join("test/happy"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    [
        vec!["dashboard", "--db", db],
        vec!["report", "--db", db],
        vec!["runs", "--db", db],
        vec!["sql", "SELECT 1", "--db", db],
        vec!["predict", face.to_str().unwrap(), "--db", db],
        vec!["export", "--out", "model.bpk", "--db", db],
    ]
    .into_iter()
    .map(|args| args.into_iter().map(String::from).collect())
    .collect()
}

#[test]
fn readers_never_create_or_migrate_a_database_that_is_not_fer_labs() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    fs::write(t.join("empty.sqlite"), b"").unwrap();
    let foreign = rusqlite::Connection::open(t.join("foreign.sqlite")).unwrap();
    foreign
        .execute_batch("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL); INSERT INTO invoices (total) VALUES (9.5);")
        .unwrap();
    drop(foreign);
    fs::write(t.join("notes.txt"), "not a database at all\n".repeat(200)).unwrap();
    // A fer-lab database of schema 3: older than readers read.
    let older = rusqlite::Connection::open(t.join("older.sqlite")).unwrap();
    for file in [
        "0001_initial.sql",
        "0002_scheduler.sql",
        "0003_dashboard.sql",
    ] {
        let sql = fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(file),
        )
        .unwrap();
        older.execute_batch(&sql).unwrap();
    }
    older.pragma_update(None, "user_version", 3).unwrap();
    drop(older);

    let cases = [
        ("empty.sqlite", "an empty database with no fer-lab results"),
        (
            "foreign.sqlite",
            "a SQLite database that fer-lab did not write (it holds tables invoices)",
        ),
        ("notes.txt", "not a SQLite database"),
        (
            "older.sqlite",
            "written by an older fer-lab (schema version 3; this one reads 4 or newer); run `fer-lab sweep` once to upgrade it",
        ),
    ];
    for (file, expected) in cases {
        let before = sha256(&t.join(file));
        for args in readers(file) {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = fer_lab(t, &args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(
                err.contains(file) && err.contains(expected),
                "{args:?}: {err}"
            );
            assert_eq!(err.trim().lines().count(), 1, "one message: {err}");
            assert_eq!(sha256(&t.join(file)), before, "{args:?} changed {file}");
        }
        // Nothing beside it either (a journal or WAL file would mean a write was attempted).
        for suffix in ["-wal", "-shm", "-journal"] {
            assert!(
                !t.join(format!("{file}{suffix}")).exists(),
                "{file}{suffix}"
            );
        }
    }
    assert!(!t.join("model.bpk").exists());

    // A sweep writes only into fer-lab's own files: someone else's database and a text file
    // are refused untouched; the older fer-lab database is upgraded.
    let sweep = write_sweep(
        t,
        "tiny",
        &format!(
            "data = \"{}\"\n[base]\nepochs = 1\nbatch_size = 32\n",
            mini().display()
        ),
    );
    for file in ["foreign.sqlite", "notes.txt"] {
        let before = sha256(&t.join(file));
        let out = fer_lab(t, &["sweep", &sweep, "--no-tui", "--db", file]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(file), "{err}");
        assert_eq!(sha256(&t.join(file)), before, "sweep changed {file}");
    }
    let out = ok(t, &["sweep", &sweep, "--no-tui", "--db", "older.sqlite"]);
    assert!(out.contains("1 trained"), "{out}");
    ok(t, &["runs", "--db", "older.sqlite"]);

    // A finished run keeps best.bpk; its epoch checkpoints go, unless asked to stay.
    let run_dir = |root: &Path| {
        fs::read_dir(root.join("tiny"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
    };
    let trimmed = run_dir(t);
    assert!(trimmed.join("best.bpk").is_file());
    assert!(
        !trimmed.join("checkpoint").exists(),
        "epoch checkpoints left"
    );
    ok(
        t,
        &[
            "sweep",
            &sweep,
            "--no-tui",
            "--keep-checkpoints",
            "--db",
            "kept/db.sqlite",
        ],
    );
    assert!(run_dir(&t.join("kept")).join("checkpoint").is_dir());
}

/// `.<out>.tmp-<pid>` folders beside `out` in `dir`.
fn temp_folders(dir: &Path, out: &str) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!(".{out}.tmp-")))
        .collect()
}

#[test]
fn an_interrupted_import_leaves_no_temporary_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    // A CSV big enough that writing its cache takes a while: the mini CSV's rows, repeated.
    let mini_csv = fs::read_to_string(fixtures().join("fer2013-mini.csv")).unwrap();
    let (header, rows) = mini_csv.split_once('\n').unwrap();
    let mut big = fs::File::create(t.join("big.csv")).unwrap();
    writeln!(big, "{header}").unwrap();
    for _ in 0..150 {
        big.write_all(rows.trim_end().as_bytes()).unwrap();
        big.write_all(b"\n").unwrap();
    }
    drop(big);

    for (signal, name) in [
        (nix::sys::signal::Signal::SIGTERM, "term"),
        (nix::sys::signal::Signal::SIGINT, "int"),
    ] {
        // Catching the import while its temporary folder exists is a race; a few tries make
        // it certain without making the test slow.
        let mut caught = false;
        for attempt in 0..5 {
            let out = format!("{name}{attempt}");
            let mut child = Command::new(env!("CARGO_BIN_EXE_fer-lab"))
                .args(["data", "import", "big.csv", "--out", &out])
                .current_dir(t)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let status = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break status;
                }
                if !temp_folders(t, &out).is_empty() {
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal)
                        .unwrap();
                    break child.wait().unwrap();
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            };
            assert!(
                temp_folders(t, &out).is_empty(),
                "{signal}: temp folder left"
            );
            if status.code() == Some(130) {
                assert!(!t.join(&out).exists(), "{signal}: a half cache");
                caught = true;
                break;
            }
            assert!(status.success(), "{signal}: {status:?}");
        }
        assert!(caught, "{signal}: never caught the import mid-write");
    }

    // SIGKILL cannot be caught: the next import of the same cache removes what it left, and
    // leaves a live import's folder alone.
    let dead = {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    };
    let stale = t.join(format!(".cache.tmp-{dead}"));
    fs::create_dir_all(&stale).unwrap();
    fs::write(stale.join("train.bin"), vec![0u8; 4096]).unwrap();
    let live = t.join(format!(".cache.tmp-{}", std::process::id()));
    fs::create_dir_all(&live).unwrap();
    let other = t.join(format!(".other.tmp-{dead}"));
    fs::create_dir_all(&other).unwrap();
    let csv = fixtures().join("fer2013-mini.csv");
    let out = ok(
        t,
        &["data", "import", csv.to_str().unwrap(), "--out", "cache"],
    );
    assert!(out.contains("left by an import that was killed"), "{out}");
    assert!(!stale.exists(), "the dead import's folder was removed");
    assert!(live.exists(), "a live import's folder is not touched");
    assert!(other.exists(), "another cache's folders are not touched");
    assert!(t.join("cache/manifest.json").is_file());
}

#[test]
fn small_mistakes_and_a_full_disk_each_get_one_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    fer_lab::store::Store::open(&t.join("db.sqlite")).unwrap();
    let code = |args: &[&str]| fer_lab(t, args).status.code();

    // A dry run refuses the devices the launch refuses.
    let quickstart = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/quickstart.toml");
    let quickstart = quickstart.to_str().unwrap();
    let mut devices = vec!["tpu", "cpu,cpu"];
    if !cfg!(feature = "tch") {
        devices.push("cuda:0");
    }
    for device in devices {
        let args = ["sweep", quickstart, "--dry-run", "--devices", device];
        let err = fails(t, &args);
        assert_eq!(code(&args), Some(2));
        assert!(err.contains(device), "{device}: {err}");
    }

    // bf16 on flex: refused before anything is recorded, naming the precision and the device.
    let bf16 = [
        "sweep",
        quickstart,
        "--devices",
        "cpu",
        "--set",
        "precision=bf16",
    ];
    for dry_run in [true, false] {
        let mut args = bf16.to_vec();
        args.extend(if dry_run {
            &["--dry-run"][..]
        } else {
            &["--db", "bf16.sqlite"][..]
        });
        let err = fails(t, &args);
        assert_eq!(code(&args), Some(2));
        assert!(
            err.contains("precision = \"bf16\" needs a libtorch device") && err.contains("`cpu`"),
            "{err}"
        );
        assert!(
            !t.join("bf16.sqlite").exists(),
            "a refused sweep wrote a database"
        );
    }
    let args = [
        "bench",
        "--precision",
        "bf16",
        "--device",
        "cpu",
        "--steps",
        "1",
    ];
    let err = fails(t, &args);
    assert!(
        err.contains("--precision bf16") && err.contains("libtorch"),
        "{err}"
    );
    let err = fails(t, &["bench", "--precision", "fp16"]);
    assert!(err.contains("f32 or bf16"), "{err}");

    let err = fails(t, &["sql", "", "--db", "db.sqlite"]);
    assert!(err.contains("the query is empty"), "{err}");
    assert!(!err.contains("misuse"), "{err}");

    // A runaway query stops at --timeout: a runtime failure, not bad input.
    let runaway =
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
    let started = std::time::Instant::now();
    let out = fer_lab(
        t,
        &["sql", runaway, "--timeout", "0.5", "--db", "db.sqlite"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("ran longer than 500ms"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert_eq!(
        code(&["sql", "SELECT 1", "--timeout", "0", "--db", "db.sqlite"]),
        Some(2)
    );

    // What a query returns is shown, not obeyed by the terminal.
    let out = ok(
        t,
        &[
            "sql",
            "SELECT char(27) || '[31mred' AS x",
            "--db",
            "db.sqlite",
        ],
    );
    assert!(
        !out.contains('\u{1b}') && out.contains("\\u{1b}[31mred"),
        "{out}"
    );

    // A full disk is the machine's failure (exit 1), said once.
    let full = fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fer-lab"))
        .args(["sql", "SELECT 1", "--db", "db.sqlite"])
        .current_dir(t)
        .stdout(full)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(err.matches("No space left on device").count(), 1, "{err}");
}

#[test]
fn an_unknown_status_filter_is_an_error_that_lists_the_statuses() {
    let tmp = tempfile::tempdir().unwrap();
    let err = fails(tmp.path(), &["runs", "--status", "donee"]);
    assert!(err.contains("donee"), "{err}");
    assert!(
        err.contains("queued, running, done, failed, diverged, pruned, interrupted"),
        "{err}"
    );
}

#[test]
fn bench_modes_are_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    let data = mini();
    let line = ok(
        t,
        &[
            "bench",
            "stage",
            "step",
            "--model",
            "baseline",
            "--batch",
            "4",
            "--steps",
            "1",
            "--device",
            "cpu",
            "--data",
            data.to_str().unwrap(),
        ],
    );
    let json: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(json["stage"], "step", "{line}");
    assert_eq!(json["model"], "baseline", "{line}");
    assert!(json["img_s"].as_f64().unwrap() > 0.0, "{line}");
    let table = ok(
        t,
        &[
            "bench",
            "--model",
            "baseline",
            "--batch",
            "2",
            "--steps",
            "1",
            "--device",
            "cpu",
            "--data",
            data.to_str().unwrap(),
        ],
    );
    assert!(
        table.contains("baseline") && table.contains("img_per_s"),
        "{table}"
    );
    let fused = ok(
        t,
        &[
            "bench",
            "fused",
            "--members",
            "2",
            "--batch",
            "2",
            "--steps",
            "1",
            "--device",
            "cpu",
            "--data",
            data.to_str().unwrap(),
        ],
    );
    assert!(
        fused.contains("alone") && fused.contains("fused"),
        "{fused}"
    );
    // The cluster's costs on simulated sweeps: every run merged and done.
    let journal = ok(
        t,
        &[
            "bench", "journal", "--runs", "20", "--epochs", "2", "--format", "json",
        ],
    );
    let journal: serde_json::Value = serde_json::from_str(&journal).unwrap();
    assert_eq!(journal[0]["runs done"], 20, "{journal}");
    // Per run: its start, an epoch and a heartbeat per epoch, its finish.
    assert_eq!(
        journal[0]["entries merged"],
        20 * (1 + 2 * 2 + 1),
        "{journal}"
    );
    let scheduler = ok(
        t,
        &[
            "bench",
            "scheduler",
            "--runs",
            "20",
            "--epochs",
            "2",
            "--slots",
            "8",
            "--format",
            "json",
        ],
    );
    let scheduler: serde_json::Value = serde_json::from_str(&scheduler).unwrap();
    assert_eq!(scheduler[0]["runs done"], 20, "{scheduler}");
    assert!(fails(t, &["bench", "scheduler", "--slots", "0"]).contains("≥ 1"));
    assert!(fails(t, &["bench", "fused", "--members", "0"]).contains("at least 1 run"));
    assert!(fails(t, &["bench", "report", "--runs", "0"]).contains("--runs must be ≥ 1"));
    assert!(fails(t, &["bench", "ops", "--device", "cpu"]).contains("use --device tch-cpu"));
    // A flag of one mode is refused in another, not ignored.
    assert!(fails(t, &["bench", "conv", "--model", "vgg"]).contains("--model"));
}

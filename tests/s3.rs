//! The S3 model store and the artifact upload, against the moto server `cargo xtask test`
//! starts (with IAM authentication on): the store behaves as the folder store does, a second
//! push uploads only what changed, large files go up in parts, and a missing bucket, refused
//! access, refused credentials and an unreachable endpoint each say so.

mod common;
mod stand_ins;

use std::path::Path;

use netsec::store::objects::Multipart;
use netsec::store::s3::S3Bucket;
use netsec::store::sync::upload_dir;
use serde_json::Value;
use stand_ins::{create_bucket, fail, netsec, s3, succeed, text, unique};

fn pipeline_into(dir: &Path, store: &str) -> Value {
    let csv = common::phishing_csv();
    let args = ["--log-format", "json", "pipeline", "--source", csv.to_str().unwrap(), "--store", store];
    serde_json::from_slice(&succeed(&mut netsec(dir, &args)).stdout).unwrap()
}

fn models(dir: &Path, store: &str, args: &[&str]) -> String {
    let mut all = vec!["models", "--store", store];
    all.extend_from_slice(args);
    text(&succeed(&mut netsec(dir, &all)).stdout)
}

#[test]
fn the_s3_store_keeps_versions_current_and_history_as_a_folder_does() {
    let dir = tempfile::tempdir().unwrap();
    let (s3, bucket) = (s3(), unique("netsec-store"));
    create_bucket(&s3, &bucket);
    let store = format!("s3://{bucket}/team/models");
    let summary = pipeline_into(dir.path(), &store);
    let first = summary["push"]["version"].as_str().unwrap().to_string();
    assert!(first.starts_with("v0001-"), "{summary}");
    // Pushing the run again stores the model again, as a second version.
    let run_id = summary["run_id"].as_str().unwrap();
    let again: Value = serde_json::from_slice(
        &succeed(&mut netsec(dir.path(), &["--log-format", "json", "push", "--run", run_id, "--store", &store])).stdout,
    )
    .unwrap();
    let second = again["push"]["version"].as_str().unwrap().to_string();
    assert!(second.starts_with("v0002-"), "{again}");

    let list = models(dir.path(), &store, &["list"]);
    assert!(list.contains(&format!("   {first}")) && list.contains(&format!("*  {second}")), "{list}");
    models(dir.path(), &store, &["promote", &first]);
    assert!(models(dir.path(), &store, &["show"]).starts_with(&format!("version      {first} (current)")));
    assert!(
        models(dir.path(), &store, &["rollback"]).contains(&format!("rolled back: {second} is now the current model"))
    );

    // What the objects hold is what the local store writes.
    let get = |key: &str| s3.block_on(s3.get(&bucket, &format!("team/models/{key}"))).unwrap().unwrap();
    let index: Value = serde_json::from_slice(&get("index.json")).unwrap();
    assert_eq!(index["versions"].as_array().unwrap().len(), 2);
    assert_eq!(String::from_utf8(get("current")).unwrap(), format!("{second}\n"));
    let meta: Value = serde_json::from_slice(&get(&format!("{first}/meta.json"))).unwrap();
    assert_eq!(meta["version"], first.as_str());
    assert!(s3.block_on(s3.head(&bucket, "team/models/.lock")).unwrap().is_none(), "the lock is released");

    // An altered model file is refused on download.
    let mut bytes = get(&format!("{first}/model.bin"));
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    s3.block_on(s3.put(&bucket, &format!("team/models/{first}/model.bin"), bytes)).unwrap();
    let stderr = fail(&mut netsec(dir.path(), &["models", "--store", &store, "show", &first]), 2);
    assert!(
        stderr.contains(&format!("s3://{bucket}/team/models/{first}/model.bin: the stored model file differs")),
        "{stderr}"
    );
    let stderr = fail(&mut netsec(dir.path(), &["models", "--store", &store, "promote", &first]), 2);
    assert!(stderr.contains("altered or damaged"), "{stderr}");
}

#[test]
fn a_second_push_uploads_only_the_files_that_changed() {
    let dir = tempfile::tempdir().unwrap();
    let (s3, bucket) = (s3(), unique("netsec-sync"));
    create_bucket(&s3, &bucket);
    let store = format!("s3://{bucket}/models");
    let summary = pipeline_into(dir.path(), &store);
    let run_id = summary["run_id"].as_str().unwrap();
    let run_dir = dir.path().join(summary["run_dir"].as_str().unwrap());
    let files = std::fs::read_dir(&run_dir).unwrap().count();
    let first = &summary["push"]["artifacts"];
    assert_eq!(first["destination"], format!("s3://{bucket}/artifacts/{run_id}/"));
    assert_eq!(
        (first["unchanged"].as_u64(), first["uploaded"].as_u64().unwrap() >= 14),
        (Some(0), true),
        "{first} {files}"
    );

    let listed = |manifest: &[u8]| -> Value { serde_json::from_slice::<Value>(manifest).unwrap()["files"].clone() };
    let before = listed(&std::fs::read(run_dir.join("manifest.json")).unwrap());
    let again: Value = serde_json::from_slice(
        &succeed(&mut netsec(dir.path(), &["--log-format", "json", "push", "--run", run_id, "--store", &store])).stdout,
    )
    .unwrap();
    let second = &again["push"]["artifacts"];
    // The push rewrote its result, the tracker its record, and the manifest (not listed in
    // itself) changed: exactly those are sent again.
    let after = listed(&std::fs::read(run_dir.join("manifest.json")).unwrap());
    let rewritten =
        after.as_object().unwrap().iter().filter(|(name, file)| before.get(name.as_str()) != Some(file)).count();
    assert!(rewritten >= 2, "the push result and the run record change: {after}");
    let uploaded = second["uploaded"].as_u64().unwrap();
    assert_eq!(uploaded, rewritten as u64 + 1, "{second}");
    assert_eq!(second["unchanged"].as_u64().unwrap() + uploaded, first["uploaded"].as_u64().unwrap());
    let manifest = s3.block_on(s3.get(&bucket, &format!("artifacts/{run_id}/manifest.json"))).unwrap().unwrap();
    assert_eq!(manifest, std::fs::read(run_dir.join("manifest.json")).unwrap());
    let head = s3.block_on(s3.head(&bucket, &format!("artifacts/{run_id}/train/model.bin"))).unwrap().unwrap();
    assert_eq!(head.sha256.unwrap(), netsec::artifacts::sha256_file(&run_dir.join("train/model.bin")).unwrap());
}

#[test]
fn large_files_go_up_in_parts_and_only_once() {
    let dir = tempfile::tempdir().unwrap();
    let (s3, bucket) = (s3(), unique("netsec-parts"));
    create_bucket(&s3, &bucket);
    let big: Vec<u8> = (0..12u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::create_dir_all(dir.path().join("run/transform")).unwrap();
    std::fs::write(dir.path().join("run/transform/big.npy"), &big).unwrap();
    std::fs::write(dir.path().join("run/small.json"), "{}").unwrap();
    let destination = S3Bucket::new(stand_ins::s3(), &bucket);
    let parts = Multipart { threshold: 5 << 20, part_size: 5 << 20 };
    let report = upload_dir(&destination, &dir.path().join("run"), "artifacts/r1", parts).unwrap();
    assert_eq!((report.uploaded, report.unchanged, report.bytes_uploaded), (2, 0, big.len() as u64 + 2));
    let stored = s3.block_on(s3.get(&bucket, "artifacts/r1/transform/big.npy")).unwrap().unwrap();
    assert!(stored == big, "the parts were joined in order");
    let etag =
        s3.block_on(s3.client.head_object().bucket(&bucket).key("artifacts/r1/transform/big.npy").send()).unwrap();
    assert!(etag.e_tag().unwrap().ends_with("-3\""), "three parts: {:?}", etag.e_tag());
    let again = upload_dir(&destination, &dir.path().join("run"), "artifacts/r1", parts).unwrap();
    assert_eq!((again.uploaded, again.unchanged), (0, 2));
}

#[test]
fn a_missing_bucket_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = unique("netsec-missing");
    let stderr = fail(&mut netsec(dir.path(), &["models", "--store", &format!("s3://{bucket}/models"), "list"]), 2);
    assert!(stderr.contains(&format!("the bucket `{bucket}` does not exist")), "{stderr}");
    assert!(stderr.contains("create the bucket"), "{stderr}");
}

#[test]
fn refused_access_and_refused_credentials_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let (s3, bucket) = (s3(), unique("netsec-denied"));
    create_bucket(&s3, &bucket);
    let store = format!("s3://{bucket}/models");
    let denied_key = stand_ins::required("NETSEC_TEST_S3_DENIED_ACCESS_KEY_ID");
    let denied_secret = stand_ins::required("NETSEC_TEST_S3_DENIED_SECRET_ACCESS_KEY");
    let mut command = netsec(dir.path(), &["models", "--store", &store, "list"]);
    command.env("AWS_ACCESS_KEY_ID", &denied_key).env("AWS_SECRET_ACCESS_KEY", &denied_secret);
    let stderr = fail(&mut command, 2);
    assert!(stderr.contains(&format!("access denied: GetObject s3://{bucket}/models/")), "{stderr}");
    assert!(stderr.contains("need the s3:GetObject permission"), "{stderr}");

    let mut command = netsec(dir.path(), &["models", "--store", &store, "list"]);
    command.env("AWS_SECRET_ACCESS_KEY", "not-the-secret");
    let stderr = fail(&mut command, 2);
    assert!(stderr.contains("S3 refused the credentials (SignatureDoesNotMatch)"), "{stderr}");
    assert!(!stderr.contains("not-the-secret"), "{stderr}");
}

#[test]
fn an_unreachable_endpoint_is_a_network_error_after_retries() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut command = netsec(dir.path(), &["models", "--store", "s3://some-bucket/models", "list"]);
    command.env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}")).env("AWS_MAX_ATTEMPTS", "2");
    let stderr = fail(&mut command, 1);
    assert!(
        stderr.contains(&format!(
            "S3 GetObject s3://some-bucket/models/current could not be sent at http://127.0.0.1:{port}"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("after retries with backoff") && stderr.contains("AWS_MAX_ATTEMPTS"), "{stderr}");
}

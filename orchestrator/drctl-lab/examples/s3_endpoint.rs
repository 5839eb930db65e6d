//! The lab's S3 endpoint on its own: versioned buckets over a folder, for
//! benchmarks that need more objects than moto can hold (moto copies every
//! key of a bucket on each version listing). Prints its URL, then serves
//! until killed. Keys: `drctl-lab` / `drctl-lab-secret`.
//! usage: cargo run -p drctl-lab --example s3_endpoint -- FOLDER BUCKET...

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let Some(root) = args.next() else {
        eprintln!("usage: s3_endpoint FOLDER BUCKET...");
        std::process::exit(2);
    };
    let buckets: Vec<String> = args.collect();
    let names: Vec<&str> = buckets.iter().map(String::as_str).collect();
    let root = std::path::PathBuf::from(root);
    drctl_lab::s3::S3Server::wipe(&root);
    match drctl_lab::s3::S3Server::start("127.0.0.1:0".parse().expect("an address"), &root, &names).await {
        Ok(server) => {
            println!("http://{}", server.addr);
            let _ = tokio::signal::ctrl_c().await;
            drctl_lab::s3::S3Server::wipe(&root);
        }
        Err(e) => {
            eprintln!("the S3 endpoint did not start: {e}");
            std::process::exit(1);
        }
    }
}

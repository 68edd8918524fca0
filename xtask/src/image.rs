//! `cargo xtask image`: the service image (the top-level `Dockerfile`) built through the Docker
//! Engine API with bollard, talking to the engine `DOCKER_HOST` names (the local socket
//! otherwise).
//!
//! ```text
//!  binary (static netsec) ─► context (staged files, tar in memory) ─► engine (build, tag)
//!                                                                      ├─► registry (push)
//!                                                                      └─► run (container, /ready)
//! ```

mod binary;
mod context;
pub mod ecr;
mod engine;
mod registry;
mod run;

use std::path::PathBuf;

pub use engine::{Engine, ImageNames};
pub use registry::push_once;
pub use run::{logs, wait_ready};

/// The repository name the image gets unless `--tag` says otherwise.
pub const DEFAULT_NAME: &str = "netsec";

#[derive(clap::Args)]
pub struct ImageArgs {
    /// The image's name (`NAME`, tagged with the git sha and `latest`) or `NAME:TAG` (also
    /// tagged TAG).
    #[arg(long, value_name = "T", default_value = DEFAULT_NAME)]
    pub tag: String,
    /// Push the sha and latest tags to REGISTRY (`host[:port]`, giving REGISTRY/NAME, or a whole
    /// repository `host[:port]/path`). Credentials: NETSEC_REGISTRY_USER and
    /// NETSEC_REGISTRY_PASSWORD, or NETSEC_REGISTRY_TOKEN (ECR's base64 `AWS:password` token);
    /// with neither, an ECR registry gets a token from GetAuthorizationToken (AWS default
    /// chain). In GitHub Actions, `image=REPOSITORY@DIGEST` is appended to $GITHUB_OUTPUT.
    #[arg(long, value_name = "REGISTRY")]
    pub push: Option<String>,
    /// Push one tag, `<sha>-<inputs digest>`, and no `latest`: for a repository whose tags are
    /// immutable (the environments' ECR repositories). When the repository has that tag
    /// already, the image there was built from the same inputs: it is not pushed again.
    #[arg(long, requires = "push")]
    pub immutable_tags: bool,
    /// Build every layer anew, ignoring the engine's build cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Start the image (host network, the model store mounted at /models, NETSEC_* variables
    /// passed on), wait for /ready and print its URL.
    #[arg(long)]
    pub run: bool,
    /// Where `--run` listens (the container uses the host's network).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT")]
    pub addr: std::net::SocketAddr,
    /// The model store `--run` mounts.
    #[arg(long, default_value = "models", value_name = "DIR")]
    pub models: PathBuf,
    /// Only build the static binary and stage the build context in target/image/, for a
    /// plain `docker build .`.
    #[arg(long)]
    pub binary_only: bool,
}

pub fn run(args: ImageArgs) -> anyhow::Result<()> {
    if args.binary_only {
        let staged = context::stage(&binary::static_binary()?)?;
        eprintln!(
            "xtask: staged {}; `docker build .` in {} builds the image",
            staged.display(),
            crate::project_root().display()
        );
        return Ok(());
    }
    let names = ImageNames::new(&args.tag)?;
    block_on(async {
        let engine = Engine::connect().await?;
        let built = build(&engine, &names, args.no_cache).await?;
        println!("built {} inputs {}", built.id, built.inputs);
        for name in names.all() {
            println!("tagged {name}");
        }
        if let Some(registry) = &args.push {
            let tags = match args.immutable_tags {
                true => Tags::Immutable(ecr::immutable_tag(&names.sha_tag, &built.inputs)),
                false => Tags::Mutable(names.tags()),
            };
            push(&engine, &names, registry, tags).await?;
        }
        if args.run {
            let url = run::start(&engine, &names.sha_tagged(), &args.models, args.addr).await?;
            println!("running at {url}");
        }
        Ok(())
    })
}

/// What a push writes into the repository.
enum Tags {
    /// Each tag pushed, moved if it was there.
    Mutable(Vec<String>),
    /// One tag that names one set of inputs forever: pushed only if the repository lacks it.
    Immutable(String),
}

/// Pushes the built image's tags into the registry's repository and reports the first by
/// digest (to GitHub Actions too, as the step output `image`).
async fn push(engine: &Engine, names: &ImageNames, registry: &str, tags: Tags) -> anyhow::Result<()> {
    let repository = registry::repository(registry, names);
    let host = repository.split('/').next().unwrap_or_default();
    let (credentials, target) = match (registry::Credentials::from_env()?, ecr::region(host)) {
        (Some(credentials), _) => (Some(credentials), repository.clone()),
        (None, Some(region)) => {
            (Some(ecr::credentials(&crate::aws::ecr(region).await?).await?), ecr::target(&repository))
        }
        (None, None) => (None, repository.clone()),
    };
    let source = names.sha_tagged();
    let pushed = match tags {
        Tags::Mutable(tags) => {
            let mut pushed = Vec::new();
            for tag in &tags {
                pushed.push(registry::push_tag(engine, &source, &target, tag, credentials.as_ref()).await?);
            }
            pushed
        }
        Tags::Immutable(tag) => vec![registry::push_once(engine, &source, &target, &tag, credentials.as_ref()).await?],
    };
    let mut first = None;
    for pushed in pushed {
        println!("{pushed}");
        first.get_or_insert(format!("{repository}@{}", pushed.digest));
    }
    match first {
        Some(reference) => github_output("image", &reference),
        None => Ok(()),
    }
}

/// Appends `name=value` to the file GitHub Actions names in GITHUB_OUTPUT, when it does.
fn github_output(name: &str, value: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let Some(path) = std::env::var_os("GITHUB_OUTPUT").filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    let mut file = std::fs::OpenOptions::new().append(true).create(true).open(&path)?;
    writeln!(file, "{name}={value}").map_err(|e| anyhow::anyhow!("writing {name} to GITHUB_OUTPUT: {e}"))
}

/// An image just built.
pub struct Built {
    /// The engine's id (the config's digest: new with every build, through the labels).
    pub id: String,
    /// The digest of what it was built from (`context::Context::inputs`).
    pub inputs: String,
}

/// Builds the static binary, stages it and builds the image (`no_cache`: every layer anew).
pub async fn build(engine: &Engine, names: &ImageNames, no_cache: bool) -> anyhow::Result<Built> {
    let binary = binary::static_binary()?;
    context::stage(&binary)?;
    let context = context::pack()?;
    let build_args = context::build_args(&binary, &context)?;
    let inputs = context.inputs.clone();
    let id = engine.build(names, context, &build_args, no_cache).await?;
    Ok(Built { id, inputs })
}

/// Runs `future` on a runtime of its own (xtask is otherwise synchronous).
pub fn block_on<T>(future: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(future)
}

//! What a provider's flags are made of (argv.rs): the context of the Job
//! that several providers read, and how a provider writes its own flags.

/// What the Job knows of the Deployment it purges for. The webhook is told
/// all of it; provider http looks its Service up in the namespace;
/// CloudFront's CallerReference starts with the Job's name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "client", derive(clap::Args))]
pub struct JobContext {
    /// The site: the value of the Deployment's site label
    #[cfg_attr(feature = "client", arg(long, default_value = ""))]
    pub site: String,
    /// The Deployment's namespace
    #[cfg_attr(feature = "client", arg(long, default_value = ""))]
    pub namespace: String,
    /// The Deployment's name
    #[cfg_attr(feature = "client", arg(long, default_value = ""))]
    pub deployment: String,
    /// The image rolled out (`name=image` lines joined by ", " for several containers)
    #[cfg_attr(feature = "client", arg(long, default_value = ""))]
    pub image: String,
    /// The hash of the image, the end of the Job's name
    #[cfg_attr(feature = "client", arg(long, default_value = ""))]
    pub image_hash: String,
    /// The companion Job's name
    #[cfg_attr(feature = "client", arg(long, default_value = ""))]
    pub job_name: String,
}

/// One field of [`JobContext`], as a provider asks for it in its argv.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Site,
    Namespace,
    Deployment,
    Image,
    ImageHash,
    JobName,
}

impl Context {
    /// In the order of the webhook's payload (SPEC §5).
    pub const ALL: [Context; 6] = [
        Context::Site,
        Context::Namespace,
        Context::Deployment,
        Context::Image,
        Context::ImageHash,
        Context::JobName,
    ];

    pub fn flag(self) -> &'static str {
        match self {
            Context::Site => "site",
            Context::Namespace => "namespace",
            Context::Deployment => "deployment",
            Context::Image => "image",
            Context::ImageHash => "image-hash",
            Context::JobName => "job-name",
        }
    }

    fn value(self, context: &JobContext) -> &str {
        match self {
            Context::Site => &context.site,
            Context::Namespace => &context.namespace,
            Context::Deployment => &context.deployment,
            Context::Image => &context.image,
            Context::ImageHash => &context.image_hash,
            Context::JobName => &context.job_name,
        }
    }
}

/// A provider's own flags: what it reads from the argv besides the targets.
pub trait RenderFlags {
    /// Writes its flags (and asks for the context it reads), in the order
    /// the program's help lists them.
    fn render(&self, to: &mut Rendering<'_>);
}

/// The argv being written: the flags so far, and what a provider's flags
/// may depend on.
pub struct Rendering<'a> {
    args: Vec<String>,
    context: &'a JobContext,
    context_given: [bool; Context::ALL.len()],
    /// Whether the purge has cache tags (http's tag header is given only then).
    pub has_tags: bool,
}

impl<'a> Rendering<'a> {
    pub fn new(args: Vec<String>, context: &'a JobContext, has_tags: bool) -> Self {
        Rendering {
            args,
            context,
            context_given: [false; Context::ALL.len()],
            has_tags,
        }
    }

    pub fn into_args(self) -> Vec<String> {
        self.args
    }

    /// `--<name>=<value>`. Not `format!`: Wasm's formatting machinery is
    /// dear on the policy's hot path.
    pub fn flag(&mut self, name: &str, value: &str) {
        self.args.push(["--", name, "=", value].concat());
    }

    /// A field of the context, once however many layers read it.
    pub fn context(&mut self, field: Context) {
        let index = Context::ALL
            .iter()
            .position(|known| *known == field)
            .unwrap_or_default();
        if let Some(given) = self.context_given.get_mut(index)
            && !*given
        {
            *given = true;
            let value = field.value(self.context);
            self.args.push(["--", field.flag(), "=", value].concat());
        }
    }
}

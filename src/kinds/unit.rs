//! `unit`: a systemd unit: its file in /etc/systemd/system (from `content` or `template`), its
//! drop-ins, and its state: `enabled`, `active`, `masked`.
//!
//! What it does: writes the unit file and drop-ins atomically, enables, disables, masks or
//! unmasks it (over D-Bus, or with the `[Install]` symlinks under `--root`, as
//! `systemctl --root` does). Starting, stopping and restarting are triggers: they run after every
//! file of the run is written and after the one `daemon-reload` (docs/triggers.md).
//! Without `content` it manages only the state of a unit that a package installed
//! (`unit: nginx.service` with `enabled: true`). `state: absent` stops, disables and removes it.
//! Why: systemd does not reload unit files by itself; converge knows which units changed and does
//! what a human forgets.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::host::mode::Mode;
use crate::host::systemd::UnitStatus;
use crate::host::unit_file::{UnitFile, check_unit_name, is_template, template_of};
use crate::host::{FileKind, Host};
use crate::kinds::Kind;
use crate::kinds::resource::{self, Attr, Change, Content, Resource, ResourceId, State, Unmerged};
use crate::playbook::attrs::Attrs;
use crate::playbook::table::{CONTENT, STATE, TEMPLATE, Table, Type, attr};
use crate::playbook::yaml_node::{Node, Span, Value};

pub const UNIT_DIR: &str = "/etc/systemd/system";
/// Where packages put their units (a `unit` without content).
const PACKAGE_UNIT_DIRS: &[&str] = &["/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"];

/// How a unit reacts to a change of its own files (`on_change:`; docs/triggers.md, rule 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnChange {
    #[default]
    Restart,
    Reload,
    None,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Unit {
    pub name: String,
    pub state: State,
    /// The unit file; None manages only the state of a unit installed by a package.
    pub content: Option<Content>,
    /// Drop-ins by file name, sorted (`NAME.d/override.conf`).
    pub dropins: Vec<(String, Content)>,
    pub enabled: Option<bool>,
    pub active: Option<bool>,
    pub masked: Option<bool>,
    pub on_change: OnChange,
    /// Ids of resources whose change restarts (reloads) this unit, with where they are named.
    pub restart_triggers: Vec<(ResourceId, Span)>,
    pub reload_triggers: Vec<(ResourceId, Span)>,
    /// `settle:` how long to watch the service after converge starts or restarts it; None for
    /// the default ([`crate::host::systemd::DEFAULT_SETTLE`]).
    pub settle: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UnitActual {
    /// The unit file in /etc/systemd/system (None: absent).
    pub file: Option<Content>,
    /// The current content of each desired drop-in.
    pub dropins: Vec<Option<Content>>,
    /// Whether it is enabled and masked; None when that could not be read (no bus, no root).
    pub enabled: Option<bool>,
    pub masked: Option<bool>,
    /// Whether it runs; None without a bus.
    pub active: Option<bool>,
}

impl Unit {
    /// Builds it; `name` is the kind key's value, rendered (empty when it could not be).
    fn build(name: String, at: Span, attrs: &mut Attrs) -> Option<Unit> {
        let state = attrs.state();
        let inline = attrs.string("content");
        let template = attrs.node("template").and_then(|node| {
            let relative = attrs.render_string("template", node)?;
            attrs.templates().render_file(&relative, node.span).map_err(|e| attrs.errors.push(e)).ok()
        });
        attrs.one_of(&["content", "template"], false, at);
        let dropins = Self::dropins(attrs);
        let enabled = attrs.bool("enabled");
        let active = attrs.bool("active");
        let masked = attrs.bool("masked");
        let on_change = Self::on_change(attrs);
        let restart_triggers = crate::kinds::ids(attrs, "restart_triggers");
        let reload_triggers = crate::kinds::ids(attrs, "reload_triggers");
        let settle = Self::settle(attrs);

        if let Err(why) = check_unit_name(&name) {
            attrs.error(at, format!("`{name}` is not a unit name: it {why}"), "not a unit name", unit_name_help(&name));
        }
        let content = inline.or(template).map(|text| Content::from(text.as_str()));
        let unit = Unit {
            name,
            state,
            content,
            dropins,
            enabled,
            active,
            masked,
            on_change,
            restart_triggers,
            reload_triggers,
            settle,
        };
        unit.check_combination(at, attrs);
        Some(unit)
    }

    /// `dropins:`, a mapping of `NAME.conf` to content, sorted by name.
    fn dropins(attrs: &mut Attrs) -> Vec<(String, Content)> {
        let mut dropins = Vec::new();
        if let Some(node) = attrs.node("dropins") {
            match &node.value {
                Value::Map(entries) => {
                    for (key, value) in entries {
                        let file = key.as_str().unwrap_or_default().to_owned();
                        if !file.ends_with(".conf") || file.contains('/') {
                            attrs.error(
                                key.span,
                                format!("`{file}` is not a drop-in name"),
                                "expected NAME.conf",
                                "name drop-ins like `override.conf`: systemd reads only *.conf files",
                            );
                        }
                        if let Some(text) = attrs.render_string("dropins", value) {
                            dropins.push((file, Content::from(text.as_str())));
                        }
                    }
                }
                _ => attrs.error(
                    node.span,
                    "`dropins` must be a mapping of file names to contents",
                    "expected `name.conf: content`",
                    "write `dropins: {override.conf: \"[Service]\\n...\"}`",
                ),
            }
    }
    dropins.sort_by(|a, b| a.0.cmp(&b.0));
    dropins
    }

    /// `on_change:` restart (the default), reload or none.
    fn on_change(attrs: &mut Attrs) -> OnChange {
        match attrs.node("on_change") {
            None => OnChange::Restart,
            Some(node) => match attrs.render_string("on_change", node).as_deref() {
                Some("restart") | None => OnChange::Restart,
                Some("reload") => OnChange::Reload,
                Some("none") => OnChange::None,
                Some(other) => {
                    let other = other.to_owned();
                    attrs.error(
                        node.span,
                        format!("unknown on_change `{other}`"),
                        "expected restart, reload or none",
                        crate::error::did_you_mean(&other, ["restart", "reload", "none"])
                            .unwrap_or_else(|| "write restart, reload or none".to_owned()),
                    );
                    OnChange::Restart
                }
            },
    }
    }

    /// `settle:`, how long a started unit is watched (a number of seconds, or `2s`, `500ms`).
    fn settle(attrs: &mut Attrs) -> Option<Duration> {
        attrs.node("settle").and_then(|node| {
            let text = match &node.value {
                Value::Int(_) | Value::Float(_) => Some(node.source(&attrs.templates().source().text).to_owned()),
                _ => attrs.render_string("settle", node),
            }?;
            let parsed = parse_duration(&text);
            if parsed.is_none() {
                attrs.error(
                    node.span,
                    format!("`settle` must be a duration, not `{text}`"),
                    "expected a duration",
                    "write seconds or milliseconds, such as `settle: 2s`, `settle: 500ms` or `settle: 0` (no watch)",
                );
            }
            parsed
        })
    }

    /// The attributes that contradict each other or the unit's name (a template, an instance,
    /// a masked unit).
    fn check_combination(&self, at: Span, attrs: &mut Attrs) {
        let Unit { name, content, enabled, active, masked, .. } = self;
        let (enabled, active, masked) = (*enabled, *active, *masked);
        if is_template(name) && (enabled.is_some() || active.is_some()) {
            let instance = name.replacen("@.", "@one.", 1);
            attrs.error(
                at,
                format!("`{name}` is a template: it is never enabled or active itself, its instances are"),
                "a template",
                format!(
                    "drop `enabled`/`active` here and manage each instance: `- unit: {instance}` with `enabled: true` and `active: true`"
                ),
            );
    }
    if let Some(template) = template_of(name)
        && content.is_some()
    {
        attrs.error(
            at,
            format!("`{name}` is an instance of `{template}`: it takes its unit file from the template"),
            "an instance with content",
            format!(
                "put the content on `- unit: {template}` and keep only `enabled`/`active` (and `dropins`) on the instance"
            ),
        );
    }
    if masked == Some(true) && (content.is_some() || active == Some(true) || enabled == Some(true)) {
        attrs.error(
            at,
            "a masked unit cannot have content, be enabled or be active",
            "contradicting attributes",
            "masking links the unit to /dev/null: drop `masked: true` or the other attributes",
        );
    }
    }

    /// A unit that the playbook does not manage (named only by a trigger).
    pub fn unmanaged() -> Unit {
        Unit {
            name: String::new(),
            state: State::Present,
            content: None,
            dropins: Vec::new(),
            enabled: None,
            active: None,
            masked: None,
            on_change: OnChange::Restart,
            restart_triggers: Vec::new(),
            reload_triggers: Vec::new(),
            settle: None,
        }
    }

    /// Whether this entry only adds to the unit's other entry: drop-ins and triggers, nothing
    /// that the other entry sets (content, template, state, enablement, settings).
    fn adds_only(&self) -> bool {
        let Unit { content, state, enabled, active, masked, on_change, settle, .. } = self;
        content.is_none()
            && *state == State::Present
            && enabled.is_none()
            && active.is_none()
            && masked.is_none()
            && *on_change == OnChange::default()
            && settle.is_none()
    }

    /// Adds `extra`'s drop-ins (by file name: one that both set is a conflict) and triggers.
    fn add(&mut self, extra: &Unit) -> Result<(), Unmerged> {
        if let Some((file, _)) = extra.dropins.iter().find(|(file, _)| self.dropins.iter().any(|(f, _)| f == file)) {
            return Err(Unmerged::Conflict(format!(
                "both entries for `{}` set the drop-in `{file}`; give one of them another name",
                self.name
            )));
        }
        self.dropins.extend(extra.dropins.iter().cloned());
        self.dropins.sort_by(|a, b| a.0.cmp(&b.0));
        for (mine, theirs) in [
            (&mut self.restart_triggers, &extra.restart_triggers),
            (&mut self.reload_triggers, &extra.reload_triggers),
        ] {
            mine.extend(theirs.iter().filter(|(id, _)| !mine.iter().any(|(m, _)| m == id)).cloned().collect::<Vec<_>>());
        }
        Ok(())
    }

    pub fn path(&self) -> PathBuf {
        Path::new(UNIT_DIR).join(&self.name)
    }

    fn dropin_path(&self, file: &str) -> PathBuf {
        Path::new(UNIT_DIR).join(format!("{}.d", self.name)).join(file)
    }

    /// The unit as it will be: its content with drop-ins applied, for trigger decisions and the
    /// layout warning. None for a package's unit.
    pub fn parsed(&self) -> Option<UnitFile> {
        let text = self.content.as_ref()?.as_text()?;
        Some(UnitFile::with_dropins(text, self.dropins.iter().filter_map(|(_, c)| c.as_text())))
    }

    /// Whether it is enabled, by the `[Install]` symlinks under an offline root.
    fn enabled_offline(&self, host: &Host) -> std::io::Result<Option<bool>> {
        let links = self.install_links(host)?;
        if links.is_empty() {
            return Ok(None); // static: nothing to enable
        }
        for (link, _) in &links {
            if host.stat(link)?.is_none() {
                return Ok(Some(false));
            }
        }
        Ok(Some(true))
    }

    /// The symlinks that `systemctl enable` makes for this unit: `WantedBy=`, `RequiredBy=` and
    /// `UpheldBy=` units' `.wants`/`.requires`/`.upholds` entries, and `Alias=` names; with the
    /// path they point at. Every name is checked as systemd checks it first (a unit file in an
    /// image could say `Alias=../../../../tmp/victim`): an invalid one is an error that names
    /// the file and line, and no link is made or removed.
    fn install_links(&self, host: &Host) -> std::io::Result<Vec<(PathBuf, PathBuf)>> {
        let (unit_path, text) = match &self.content {
            Some(content) => (self.path(), content.as_text().unwrap_or_default().to_owned()),
            None => match self.package_unit(host)? {
                Some((path, text)) => (path, text),
                None => return Ok(Vec::new()),
            },
        };
        let unit = UnitFile::with_dropins(&text, self.dropins.iter().filter_map(|(_, c)| c.as_text()));
        let dir = Path::new(UNIT_DIR);
        let refuse = |key: &str, word: &str, line: usize, why: String| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} (or a drop-in of it), line {line}: `{key}={word}` {why}; converge makes and removes no link for it",
                    unit_path.display()
                ),
            )
        };
        let mut links = Vec::new();
        for (key, dir_suffix) in [("WantedBy", ".wants"), ("RequiredBy", ".requires"), ("UpheldBy", ".upholds")] {
            for (target, line) in unit.list_with_lines("Install", key) {
                check_unit_name(&target)
                    .map_err(|why| refuse(key, &target, line, format!("is not a unit name: it {why}")))?;
                links.push((dir.join(format!("{target}{dir_suffix}")).join(&self.name), unit_path.clone()));
            }
        }
        let own_type = self.name.rsplit_once('.').map(|(_, t)| t);
        for (alias, line) in unit.list_with_lines("Install", "Alias") {
            check_unit_name(&alias)
                .map_err(|why| refuse("Alias", &alias, line, format!("is not a unit name: it {why}")))?;
            if alias.rsplit_once('.').map(|(_, t)| t) != own_type {
                return Err(refuse(
                    "Alias",
                    &alias,
                    line,
                    "has another type than the unit (systemd refuses it)".into(),
                ));
            }
            links.push((dir.join(alias), unit_path.clone()));
        }
        for (also, line) in unit.list_with_lines("Install", "Also") {
            check_unit_name(&also)
                .map_err(|why| refuse("Also", &also, line, format!("is not a unit name: it {why}")))?;
        }
        Ok(links)
    }

    /// A package's unit file: where it is and what it says. For an instance
    /// (`app@one.service`) without a file of its own, its template's (`app@.service`), which
    /// `systemctl enable` links the instance's name to.
    fn package_unit(&self, host: &Host) -> std::io::Result<Option<(PathBuf, String)>> {
        for name in std::iter::once(self.name.clone()).chain(template_of(&self.name)) {
            for dir in PACKAGE_UNIT_DIRS {
                let path = Path::new(dir).join(&name);
                if host.stat(&path)?.is_some_and(|s| s.kind == FileKind::File) {
                    return Ok(Some((path.clone(), String::from_utf8_lossy(&host.read(&path)?).into_owned())));
                }
            }
        }
        Ok(None)
    }

    fn masked_offline(&self, host: &Host) -> std::io::Result<bool> {
        Ok(host.stat(&self.path())?.is_some_and(|s| s.kind == FileKind::Symlink)
            && host.read_link(&self.path())?.as_os_str() == "/dev/null")
    }

    fn read_optional(host: &Host, path: &Path) -> std::io::Result<Option<Content>> {
        match host.stat(path)? {
            Some(stat) if stat.kind == FileKind::File => Ok(Some(Content::from(host.read(path)?))),
            _ => Ok(None),
        }
    }

    fn error(&self, message: impl Into<String>, e: std::io::Error) -> Error {
        Error::resource_io(self.id(), message, e)
    }

    fn set_enabled_offline(&self, host: &Host, enable: bool) -> std::io::Result<()> {
        for (link, target) in self.install_links(host)? {
            if enable {
                host.create_dirs(link.parent().expect("links live in a directory"))?;
                host.system_symlink(&target, &link)?;
            } else {
                host.remove(&link)?;
            }
        }
        Ok(())
    }
}

/// A duration as `settle:` takes it: seconds (`2`, `1.5`, `2s`) or milliseconds (`500ms`), at
/// most an hour.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, scale) = match text.strip_suffix("ms") {
        Some(n) => (n, 0.001),
        None => (text.strip_suffix('s').unwrap_or(text), 1.0),
    };
    let number = number.trim();
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let seconds = number.parse::<f64>().ok()? * scale;
    (seconds <= 3600.0).then(|| Duration::from_secs_f64(seconds))
}

/// How to name a unit: its suffix corrected (`ssh.servic` -> `ssh.service`) or added.
pub fn unit_name_help(name: &str) -> String {
    let fixed = crate::host::unit_file::unit_suggestion(name);
    if check_unit_name(&fixed).is_ok() {
        format!("name the unit with its type, such as {fixed}")
    } else {
        "a unit name is NAME.TYPE (app.service, app.socket, app@.service) of letters, digits and :-_.\\".into()
    }
}

/// What systemd's unit status says about enablement and activity.
pub fn observed_state(status: &UnitStatus) -> (Option<bool>, bool, bool) {
    let file_state = status.unit_file_state.as_str();
    let enabled = match file_state {
        "enabled" | "enabled-runtime" | "alias" => Some(true),
        "disabled" => Some(false),
        _ => None, // static, indirect, generated, transient: nothing to enable
    };
    let masked = file_state.starts_with("masked") || status.load_state == "masked";
    let active = matches!(status.active_state.as_str(), "active" | "activating" | "reloading");
    (enabled, masked, active)
}

impl Resource for Unit {
    type Actual = UnitActual;

    const KIND: Kind = Kind::Unit;

    const TABLE: Table = Table {
        names: Type::String,
        doc: "a systemd unit: its file, drop-ins, enablement and state",
        attrs: &[
            STATE,
            CONTENT,
            TEMPLATE,
            attr("dropins", Type::Dropins, "drop-in files, NAME.conf: content"),
            attr("enabled", Type::Bool, "enabled at boot (unmanaged when omitted)"),
            attr("active", Type::Bool, "running (unmanaged when omitted)"),
            attr("masked", Type::Bool, "masked (unmanaged when omitted)"),
            attr("on_change", Type::Word(&["restart", "reload", "none"]), "what a change of its files does to it"),
            attr("restart_triggers", Type::Strings, "ids whose changes restart this unit"),
            attr("reload_triggers", Type::Strings, "ids whose changes reload this unit"),
            attr("settle", Type::Duration, "how long a started service is watched for a failure (default 1s; 0: not)"),
        ],
    };

    fn from_attrs(name: &Node, attrs: &mut Attrs) -> Option<Unit> {
        let unit = attrs.render_string(Self::KIND.name(), name);
        let resource = Unit::build(unit.clone().unwrap_or_default(), name.span, attrs)?;
        unit.map(|_| resource)
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    /// Another entry for the same unit that only adds to it (a module's unit extended by the
    /// playbook): see [`Unit::adds_only`] and [`Unit::add`].
    fn merge(&mut self, other: &Unit) -> Result<(), Unmerged> {
        if other.adds_only() {
            self.add(other)
        } else if self.adds_only() {
            let extra = std::mem::replace(self, other.clone());
            self.add(&extra)
        } else {
            Err(Unmerged::Conflict(format!(
                "`{}` is set up by two entries; a second entry for a unit may only add `dropins:` (and \
                 `restart_triggers`/`reload_triggers`), with no content, template, state or settings of its own",
                self.name
            )))
        }
    }

    fn names_ids(&self) -> Vec<(&ResourceId, Span)> {
        self.restart_triggers.iter().chain(&self.reload_triggers).map(|(id, span)| (id, *span)).collect()
    }

    fn content(&self) -> Option<&Content> {
        self.content.as_ref()
    }

    fn paths(&self) -> Vec<PathBuf> {
        std::iter::once(self.path()).chain(self.dropins.iter().map(|(name, _)| self.dropin_path(name))).collect()
    }

    fn slow_step(&self) -> Option<&'static str> {
        Some("systemd")
    }

    fn observe(&self, host: &Host) -> Result<UnitActual> {
        let io = |e| self.error("cannot read it", e);
        let file = if self.content.is_some() || self.state == State::Absent {
            Self::read_optional(host, &self.path()).map_err(io)?
        } else {
            None
        };
        let mut dropins = Vec::new();
        for (name, _) in &self.dropins {
            dropins.push(Self::read_optional(host, &self.dropin_path(name)).map_err(io)?);
        }
        let (enabled, masked, active) = match host.unit_status(&self.name)? {
            // An instance of a template that is not there yet (written above in this run): it
            // is neither enabled nor running.
            Some(status) if status.load_state == "not-found" && template_of(&self.name).is_some() => {
                (Some(false), Some(false), Some(false))
            }
            Some(status) => {
                let (enabled, masked, active) = observed_state(&status);
                (enabled, Some(masked), Some(active))
            }
            // A template has no state in systemd: only its file (and whether it is masked).
            None if is_template(&self.name) => (None, Some(self.masked_offline(host).map_err(io)?), None),
            None if host.root().is_some() => {
                (self.enabled_offline(host).map_err(io)?, Some(self.masked_offline(host).map_err(io)?), None)
            }
            None => (None, None, None),
        };
        Ok(UnitActual { file, dropins, enabled, masked, active })
    }

    fn diff(&self, actual: &UnitActual) -> Vec<Change> {
        let flag = |attr, from: Option<bool>, to: bool| Change::set(attr, from, to);
        if self.state == State::Absent {
            let exists = actual.file.is_some() || actual.enabled == Some(true);
            return if exists { vec![Change::Remove] } else { vec![] };
        }
        let mut changes = Vec::new();
        if let Some(to) = &self.content
            && actual.file.as_ref() != Some(to)
        {
            if actual.file.is_none() {
                changes.push(Change::Create);
            }
            changes.push(Change::Content { file: Some(self.path()), from: actual.file.clone(), to: to.clone() });
        }
        for ((name, to), from) in self.dropins.iter().zip(&actual.dropins) {
            if from.as_ref() != Some(to) {
                changes.push(Change::Content {
                    file: Some(self.dropin_path(name)),
                    from: from.clone(),
                    to: to.clone(),
                });
            }
        }
        if let Some(want) = self.masked
            && actual.masked.is_some_and(|m| m != want)
        {
            changes.push(flag(Attr::Masked, actual.masked, want));
        }
        // A new unit file is not enabled yet, whatever the bus says about the name.
        let new = actual.file.is_none() && self.content.is_some();
        match self.enabled {
            Some(true) if new => changes.push(flag(Attr::Enabled, None, true)),
            Some(want) if !new && actual.enabled.is_some_and(|e| e != want) => {
                changes.push(flag(Attr::Enabled, actual.enabled, want))
            }
            _ => {}
        }
        if let (Some(want), Some(now)) = (self.active, actual.active)
            && want != now
        {
            changes.push(Change::set(
                Attr::Active,
                Some(resource::Value::Running(now)),
                resource::Value::Running(want),
            ));
        }
        changes
    }

    fn apply(&self, changes: &[Change], host: &Host) -> Result<()> {
        let systemd = host.systemd()?;
        let names = [self.name.clone()];
        let dbus = |e: crate::host::systemd::SystemdError| Error::resource(self.id(), e.to_string());
        if changes.contains(&Change::Remove) {
            match systemd {
                Some(systemd) => systemd.disable(&names).map_err(dbus)?,
                None => self.set_enabled_offline(host, false).map_err(|e| self.error("cannot disable it", e))?,
            }
            for (name, _) in &self.dropins {
                host.remove(&self.dropin_path(name)).map_err(|e| self.error("cannot remove a drop-in", e))?;
            }
            return host.remove(&self.path()).map_err(|e| self.error("cannot remove it", e));
        }
        for change in changes {
            if let Change::Content { file, to, .. } = change {
                let path = file.clone().unwrap_or_else(|| self.path());
                host.create_dirs(path.parent().expect("unit files live in a directory"))
                    .and_then(|()| host.write_system_file(&path, to.bytes(), Mode(0o644)))
                    .map_err(|e| self.error(format!("cannot write {}", path.display()), e))?;
            }
        }
        for change in changes {
            let Change::Set { attr, .. } = change else { continue };
            let (masked, enabled) = (self.masked == Some(true), self.enabled == Some(true));
            match (*attr, systemd) {
                (Attr::Masked, Some(systemd)) => {
                    if masked { systemd.mask(&names) } else { systemd.unmask(&names) }.map_err(dbus)?
                }
                (Attr::Enabled, Some(systemd)) => {
                    if enabled { systemd.enable(&names) } else { systemd.disable(&names) }.map_err(dbus)?
                }
                (Attr::Masked, None) if masked => host
                    .system_symlink(Path::new("/dev/null"), &self.path())
                    .map_err(|e| self.error("cannot mask it", e))?,
                (Attr::Masked, None) => host.remove(&self.path()).map_err(|e| self.error("cannot unmask it", e))?,
                (Attr::Enabled, None) => self
                    .set_enabled_offline(host, enabled)
                    .map_err(|e| self.error("cannot change its enablement", e))?,
                _ => {} // `active` is a trigger: started or stopped after daemon-reload
            }
        }
        host.forget_units();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit() -> Unit {
        Unit {
            name: "gunicorn.service".into(),
            state: State::Present,
            content: Some(Content::from("[Service]\nExecStart=/bin/true\n")),
            dropins: vec![("limits.conf".into(), Content::from("[Service]\nLimitNOFILE=4096\n"))],
            enabled: Some(true),
            active: Some(true),
            masked: None,
            on_change: OnChange::Restart,
            restart_triggers: vec![],
            reload_triggers: vec![],
            settle: None,
        }
    }

    fn converged() -> UnitActual {
        UnitActual {
            file: Some(Content::from("[Service]\nExecStart=/bin/true\n")),
            dropins: vec![Some(Content::from("[Service]\nLimitNOFILE=4096\n"))],
            enabled: Some(true),
            masked: Some(false),
            active: Some(true),
        }
    }

    #[test]
    fn converged_unit_has_no_changes() {
        assert_eq!(unit().diff(&converged()), vec![]);
    }

    #[test]
    fn new_unit_is_created_enabled_and_started() {
        let actual =
            UnitActual { file: None, dropins: vec![None], enabled: None, masked: Some(false), active: Some(false) };
        let changes = unit().diff(&actual);
        assert_eq!(changes[0], Change::Create);
        assert!(
            matches!(&changes[1], Change::Content { file: Some(p), from: None, .. } if p.ends_with("system/gunicorn.service"))
        );
        assert!(
            matches!(&changes[2], Change::Content { file: Some(p), .. } if p.ends_with("gunicorn.service.d/limits.conf"))
        );
        assert!(changes.contains(&Change::set_to(Attr::Enabled, true)));
        assert!(changes.contains(&Change::set(
            Attr::Active,
            Some(resource::Value::Running(false)),
            resource::Value::Running(true)
        )));
    }

    #[test]
    fn a_changed_dropin_alone() {
        let mut actual = converged();
        actual.dropins = vec![Some(Content::from("[Service]\nLimitNOFILE=1024\n"))];
        let changes = unit().diff(&actual);
        assert_eq!(changes.len(), 1);
        assert!(matches!(&changes[0], Change::Content { file: Some(_), from: Some(_), .. }));
    }

    #[test]
    fn unknown_state_without_a_bus_is_not_a_change() {
        let mut actual = converged();
        actual.enabled = None;
        actual.active = None;
        actual.masked = None;
        assert_eq!(unit().diff(&actual), vec![]);
    }

    #[test]
    fn package_unit_state_only() {
        let mut u = unit();
        u.content = None;
        u.dropins.clear();
        let actual =
            UnitActual { file: None, dropins: vec![], enabled: Some(false), masked: Some(false), active: Some(true) };
        assert_eq!(u.diff(&actual), vec![Change::set(Attr::Enabled, Some(false), true)]);
    }

    #[test]
    fn absent_and_masked() {
        let mut u = unit();
        u.state = State::Absent;
        assert_eq!(u.diff(&converged()), vec![Change::Remove]);
        let gone = UnitActual {
            file: None,
            dropins: vec![None],
            enabled: Some(false),
            masked: Some(false),
            active: Some(false),
        };
        assert_eq!(u.diff(&gone), vec![]);
        let mut m = unit();
        m.content = None;
        m.dropins.clear();
        m.enabled = None;
        m.active = None;
        m.masked = Some(true);
        assert_eq!(m.diff(&converged()), vec![Change::set(Attr::Masked, Some(false), true)]);
    }

    fn dropins_only(file: &str) -> Unit {
        let mut extra = Unit::unmanaged();
        extra.name = "gunicorn.service".into();
        extra.dropins = vec![(file.into(), Content::from("[Service]\nNice=5\n"))];
        extra
    }

    #[test]
    fn an_entry_of_drop_ins_only_merges_into_the_unit_whichever_comes_first() {
        let mut merged = unit();
        merged.merge(&dropins_only("nice.conf")).unwrap();
        let files: Vec<&str> = merged.dropins.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(files, ["limits.conf", "nice.conf"]);
        let mut first = dropins_only("nice.conf");
        first.merge(&unit()).unwrap();
        assert_eq!(first, merged);
    }

    #[test]
    fn two_contents_or_one_drop_in_from_both_do_not_merge() {
        assert!(matches!(unit().merge(&unit()), Err(Unmerged::Conflict(m)) if m.contains("may only add `dropins:`")));
        let mut enabled = dropins_only("nice.conf");
        enabled.enabled = Some(true);
        assert!(matches!(unit().merge(&enabled), Err(Unmerged::Conflict(_))));
        let clash = unit().merge(&dropins_only("limits.conf"));
        assert!(matches!(clash, Err(Unmerged::Conflict(m)) if m.contains("`limits.conf`")));
    }

    #[test]
    fn settle_durations() {
        assert_eq!(parse_duration("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("-1"), None);
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("2h"), None);
        assert_eq!(parse_duration("7200"), None);
    }

    #[test]
    fn systemd_states() {
        let status = |file: &str, active: &str| UnitStatus {
            unit_file_state: file.into(),
            active_state: active.into(),
            load_state: "loaded".into(),
            ..UnitStatus::default()
        };
        assert_eq!(observed_state(&status("enabled", "active")), (Some(true), false, true));
        assert_eq!(observed_state(&status("disabled", "inactive")), (Some(false), false, false));
        assert_eq!(observed_state(&status("static", "activating")), (None, false, true));
        assert_eq!(observed_state(&status("masked", "inactive")), (None, true, false));
    }
}

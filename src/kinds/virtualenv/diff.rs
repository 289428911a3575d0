//! What must change in a venv: whether it is made anew, the steps for its packages (what to
//! install, replace, or find extraneous, through the dependencies of what is installed), the
//! changes a plan shows for them, and the work they give pip.

use std::collections::BTreeSet;

use pep508_rs::{ExtraName, MarkerEnvironment, Requirement};

use super::Virtualenv;
use super::metadata::Installed;
use super::observe::{Observed, WantedPython};
use super::requirements::{Wanted, marker_environment, plain, unsatisfied};
use crate::kinds::resource::{Attr, Change, ownership_changes};

/// Distributions that pip and venv put there themselves; never extraneous (`pip freeze` leaves
/// them out for the same reason).
const TOOLING: &[&str] = &["pip", "setuptools", "wheel", "distribute"];

/// One thing to do to the packages of a venv.
#[derive(Debug)]
enum Step<'a> {
    /// A requirement whose distribution is not installed.
    Install(&'a Wanted),
    /// Installed, but its version does not satisfy the requirement.
    Replace { wanted: &'a Wanted, installed: &'a Installed, direction: Attr },
    /// A dependency of a satisfied requirement that is missing or does not satisfy it.
    Dependency { requirement: String, of: &'a Installed, installed: Option<&'a Installed> },
    /// Installed, and nothing asks for it.
    Extraneous(&'a Installed),
}

/// The steps found so far, as the requirements and then their dependencies are walked.
struct Steps<'a> {
    venv: &'a Observed,
    env: Option<MarkerEnvironment>,
    steps: Vec<Step<'a>>,
    /// Installed names that something asks for.
    needed: BTreeSet<&'a str>,
    /// Names already planned, so that none is planned twice.
    stepped: BTreeSet<String>,
}

impl<'a> Steps<'a> {
    /// Whether a requirement's marker holds for the venv's interpreter, with these extras.
    fn applies(&self, requirement: &Requirement, extras: &[ExtraName]) -> bool {
        requirement.marker.evaluate_optional_environment(self.env.as_ref(), extras)
    }

    /// Plans `step` for the distribution `name`, unless one is planned for it already.
    fn plan(&mut self, name: &str, step: Step<'a>) {
        if self.stepped.insert(name.to_owned()) {
            self.steps.push(step);
        }
    }

    /// A requirement of the playbook: planned when it does not hold; its name and extras when
    /// it holds, as its own dependencies must hold too.
    fn wanted(&mut self, wanted: &'a Wanted) -> Option<(&'a str, Vec<ExtraName>)> {
        self.needed.insert(wanted.name());
        match self.venv.packages.get(wanted.name()) {
            None => self.plan(wanted.name(), Step::Install(wanted)),
            Some(installed) => match unsatisfied(&wanted.requirement, installed) {
                Some(direction) => self.plan(wanted.name(), Step::Replace { wanted, installed, direction }),
                None => return Some((wanted.name(), wanted.requirement.extras.clone())),
            },
        }
        None
    }

    /// The dependencies of the requirements that hold, through the Requires-Dist of what is
    /// installed: each missing or unsatisfied one is planned.
    fn dependencies(&mut self, mut satisfied: Vec<(&'a str, Vec<ExtraName>)>) {
        let venv = self.venv;
        let mut visited: BTreeSet<(&str, Vec<ExtraName>)> = BTreeSet::new();
        while let Some((name, extras)) = satisfied.pop() {
            let Some((key, installed)) = venv.packages.get_key_value(name) else { continue };
            if !visited.insert((key.as_str(), extras.clone())) {
                continue;
            }
            for line in &installed.requires {
                let Ok(dependency) = line.parse::<Requirement>() else { continue };
                if !self.applies(&dependency, &extras) {
                    continue;
                }
                let Some((dep_key, dep)) = venv.packages.get_key_value(dependency.name.as_ref()) else {
                    let step = Step::Dependency { requirement: plain(&dependency), of: installed, installed: None };
                    self.plan(dependency.name.as_ref(), step);
                    continue;
                };
                self.needed.insert(dep_key);
                if unsatisfied(&dependency, dep).is_some() {
                    let step =
                        Step::Dependency { requirement: plain(&dependency), of: installed, installed: Some(dep) };
                    self.plan(dep_key, step);
                } else {
                    satisfied.push((dep_key, dependency.extras.clone()));
                }
            }
        }
    }

    /// What is installed and asked for by nothing (tooling aside).
    fn extraneous(&mut self) {
        for (key, installed) in &self.venv.packages {
            if !self.needed.contains(key.as_str()) && !TOOLING.contains(&key.as_str()) {
                self.steps.push(Step::Extraneous(installed));
            }
        }
    }
}

impl Virtualenv {
    /// What must change in the packages of an existing, usable venv.
    fn steps<'a>(&'a self, venv: &'a Observed) -> Vec<Step<'a>> {
        let env = marker_environment(venv);
        let mut steps = Steps { venv, env, steps: Vec::new(), needed: BTreeSet::new(), stepped: BTreeSet::new() };
        let mut satisfied = Vec::new();
        for wanted in &self.requirements {
            if steps.applies(&wanted.requirement, &[]) {
                satisfied.extend(steps.wanted(wanted));
            }
        }
        steps.dependencies(satisfied);
        steps.extraneous();
        steps.steps
    }

    /// The requirement strings to give `pip install`, and the names to give `pip uninstall`.
    pub(super) fn pip_work(&self, venv: &Observed) -> (Vec<String>, Vec<String>) {
        let mut install = Vec::new();
        let mut uninstall = Vec::new();
        for step in self.steps(venv) {
            match step {
                Step::Install(wanted) | Step::Replace { wanted, .. } => install.push(wanted.text.clone()),
                Step::Dependency { requirement, .. } => install.push(requirement),
                Step::Extraneous(installed) if self.exact => uninstall.push(installed.name.clone()),
                Step::Extraneous(_) => {}
            }
        }
        (install, uninstall)
    }

    /// Why the venv must be made anew, if it must.
    pub(super) fn recreate_reason(&self, venv: &Observed) -> Option<String> {
        if let Some(broken) = &venv.broken {
            return Some(format!("it is broken: {broken}"));
        }
        let (WantedPython::Binary(wanted), Some(current)) = (&venv.wanted_python, &venv.interpreter) else {
            return None;
        };
        (wanted != current).then(|| {
            let version = venv.python_version.as_deref().map(|v| format!(" ({v})")).unwrap_or_default();
            format!(
                "the interpreter changed: {}{version} -> {} (`python: {}`)",
                current.display(),
                wanted.display(),
                self.python
            )
        })
    }

    /// The changes of a venv made anew: `reason` when one is replaced, and every requirement.
    pub(super) fn create_changes(&self, reason: Option<String>, (owner, group): (&str, &str)) -> Vec<Change> {
        let mut changes = vec![Change::Create];
        match reason {
            Some(reason) => changes.push(Change::set_to(Attr::Recreate, reason)),
            None => changes.push(Change::set_to(Attr::Python, &self.python)),
        }
        changes.extend(ownership_changes(&self.ownership, owner, group));
        changes.extend(self.requirements.iter().map(|w| Change::set_to(Attr::Install, &w.text)));
        changes
    }

    /// The changes to the packages of an existing, usable venv.
    pub(super) fn package_changes(&self, venv: &Observed) -> Vec<Change> {
        let mut changes = Vec::new();
        let mut extraneous = Vec::new();
        let mut uninstall = Vec::new();
        for step in self.steps(venv) {
            let change = match step {
                Step::Install(wanted) => Change::set_to(Attr::Install, &wanted.text),
                Step::Replace { wanted, installed, direction } => {
                    Change::set(direction, Some(format!("{} {}", installed.name, installed.version)), &wanted.text)
                }
                Step::Dependency { requirement, of, installed } => Change::set(
                    Attr::Install,
                    installed.map(|i| format!("{} {}", i.name, i.version)),
                    format!("{requirement} (a dependency of {} {})", of.name, of.version),
                ),
                Step::Extraneous(installed) if self.exact => {
                    uninstall.push(format!("{} {}", installed.name, installed.version));
                    continue;
                }
                Step::Extraneous(installed) => {
                    extraneous.push(Change::set_to(
                        Attr::Extraneous,
                        format!("{} {} (left alone; `exact: true` uninstalls it)", installed.name, installed.version),
                    ));
                    continue;
                }
            };
            changes.push(change);
        }
        // With `exact`, what the installs bring along is kept: it is decided after them.
        let note = if changes.is_empty() { "" } else { " (unless what is installed now needs it)" };
        changes.extend(uninstall.into_iter().map(|to| Change::set_to(Attr::Uninstall, to + note)));
        // Extraneous packages are shown alongside real changes only: on their own they are no
        // difference, or a converged venv would never plan empty.
        if !changes.is_empty() {
            changes.extend(extraneous);
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::super::metadata::normalize;
    use super::super::installer::{Installer, Tool};
    use super::super::observe::{Platform, Seen, VenvActual};
    use super::*;
    use crate::kinds::resource::Resource;
    use crate::kinds::resource::{Ownership, State};

    fn venv(packages: &[&str]) -> Virtualenv {
        Virtualenv {
            path: "/srv/venv".into(),
            state: State::Present,
            python: "python3".into(),
            ownership: Ownership { owner: Some("app".into()), group: None },
            requirements: packages.iter().map(|p| Wanted::parse(p).unwrap()).collect(),
            index_url: None,
            extra_index_urls: vec![],
            find_links: vec![],
            no_index: false,
            pip_args: vec![],
            exact: false,
            installer: Installer::Auto,
            uv: None,
            installer_at: Default::default(),
        }
    }

    fn installed(name: &str, version: &str, requires: &[&str]) -> (String, Installed) {
        let requires = requires.iter().map(|r| r.to_string()).collect();
        (normalize(name), Installed { name: name.into(), version: version.into(), requires })
    }

    fn observed(packages: Vec<(String, Installed)>) -> VenvActual {
        let mut all = vec![installed("pip", "24.0", &[]), installed("setuptools", "65.5.0", &[])];
        all.extend(packages);
        VenvActual::Present(Box::new(Observed {
            owner: "app".into(),
            group: "app".into(),
            python_version: Some("3.11.7".into()),
            interpreter: Some("/usr/bin/python3.11".into()),
            wanted_python: WantedPython::Binary("/usr/bin/python3.11".into()),
            platform: Platform { machine: "x86_64".into(), release: "6.1.0".into(), version: "#1 SMP".into() },
            packages: all.into_iter().collect(),
            ..Observed::default()
        }))
    }

    fn set(attr: Attr, from: Option<&str>, to: &str) -> Change {
        Change::set(attr, from, to)
    }

    #[test]
    fn a_new_venv_is_created_with_every_requirement() {
        let changes = venv(&["demo==1.0", "idna>=3"]).venv_changes(&VenvActual::Absent);
        assert_eq!(
            changes,
            [
                Change::Create,
                set(Attr::Python, None, "python3"),
                set(Attr::Owner, Some(""), "app"),
                set(Attr::Install, None, "demo==1.0"),
                set(Attr::Install, None, "idna>=3"),
            ]
        );
    }

    #[test]
    fn a_converged_venv_has_no_changes() {
        let actual = observed(vec![
            installed("Demo_Pkg", "1.0", &["idna (>=2.5)", "PySocks; extra == \"socks\""]),
            installed("idna", "3.7", &[]),
        ]);
        // Names match whatever their spelling; idna is a dependency, pip and setuptools are
        // tooling: nothing is extraneous, even with `exact`.
        let mut v = venv(&["demo-pkg>=1,<2"]);
        assert_eq!(v.venv_changes(&actual), vec![]);
        v.exact = true;
        assert_eq!(v.venv_changes(&actual), vec![]);
        assert_eq!(
            v.pip_work(match &actual {
                VenvActual::Present(o) => o,
                VenvActual::Absent => unreachable!(),
            }),
            (vec![], vec![])
        );
    }

    #[test]
    fn versions_that_fail_their_specifier_are_upgraded_or_downgraded() {
        let actual = observed(vec![installed("demo", "1.0", &[]), installed("idna", "3.7", &[])]);
        assert_eq!(
            venv(&["demo==2.0", "idna<3"]).venv_changes(&actual),
            [set(Attr::Upgrade, Some("demo 1.0"), "demo==2.0"), set(Attr::Downgrade, Some("idna 3.7"), "idna<3")]
        );
        assert_eq!(venv(&["demo!=1.0", "idna"]).venv_changes(&actual), [set(Attr::Replace, Some("demo 1.0"), "demo!=1.0")]);
    }

    #[test]
    fn extraneous_packages_are_listed_beside_changes_and_removed_only_when_exact() {
        let actual = observed(vec![installed("demo", "1.0", &[]), installed("left-over", "0.3", &[])]);
        assert_eq!(venv(&["demo"]).venv_changes(&actual), vec![], "extraneous alone is no change");
        assert_eq!(
            venv(&["demo", "idna"]).venv_changes(&actual),
            [
                set(Attr::Install, None, "idna"),
                set(Attr::Extraneous, None, "left-over 0.3 (left alone; `exact: true` uninstalls it)"),
            ]
        );
        let mut exact = venv(&["demo"]);
        exact.exact = true;
        assert_eq!(exact.venv_changes(&actual), [set(Attr::Uninstall, None, "left-over 0.3")]);
        let VenvActual::Present(o) = &actual else { unreachable!() };
        assert_eq!(exact.pip_work(o), (vec![], vec!["left-over".to_owned()]));
        // Beside an install, the new version may need it: that is decided after the install.
        exact.requirements.push(Wanted::parse("idna").unwrap());
        assert_eq!(
            exact.venv_changes(&actual),
            [
                set(Attr::Install, None, "idna"),
                set(Attr::Uninstall, None, "left-over 0.3 (unless what is installed now needs it)"),
            ]
        );
    }

    #[test]
    fn missing_dependencies_of_a_satisfied_requirement_are_installed() {
        let actual =
            observed(vec![installed("demo", "1.0", &["idna>=3", "chardet<5"]), installed("chardet", "5.2", &[])]);
        assert_eq!(
            venv(&["demo"]).venv_changes(&actual),
            [
                set(Attr::Install, None, "idna>=3 (a dependency of demo 1.0)"),
                set(Attr::Install, Some("chardet 5.2"), "chardet<5 (a dependency of demo 1.0)"),
            ]
        );
        let VenvActual::Present(o) = &actual else { unreachable!() };
        assert_eq!(venv(&["demo"]).pip_work(o).0, ["idna>=3", "chardet<5"]);
    }

    #[test]
    fn markers_and_extras_are_evaluated_for_the_venvs_interpreter() {
        let actual =
            observed(vec![installed("demo", "1.0", &["pysocks; extra == \"socks\"", "old; python_version < \"3\""])]);
        // A requirement for another Python does not apply; an extra's dependency only with it.
        assert_eq!(venv(&["demo", "futures; python_version < \"3\""]).venv_changes(&actual), vec![]);
        assert_eq!(venv(&["demo[socks]"]).venv_changes(&actual), [set(Attr::Install, None, "pysocks (a dependency of demo 1.0)")]);
        assert_eq!(
            venv(&["uvloop; sys_platform == \"linux\" and python_version >= \"3.8\""]).venv_changes(&actual)[0],
            set(Attr::Install, None, "uvloop; sys_platform == \"linux\" and python_version >= \"3.8\"")
        );
    }

    #[test]
    fn recreated_only_when_the_interpreter_changed_or_it_is_broken() {
        let with = |f: &dyn Fn(&mut Observed)| {
            let VenvActual::Present(mut o) = observed(vec![installed("demo", "1.0", &[])]) else { unreachable!() };
            f(&mut o);
            VenvActual::Present(o)
        };
        let v = venv(&["demo"]);
        let changes = v.venv_changes(&with(&|o| o.wanted_python = WantedPython::Binary("/opt/py/bin/python3.12".into())));
        assert_eq!(changes[0], Change::Create);
        assert_eq!(
            changes[1],
            set(Attr::Recreate,
                None,
                "the interpreter changed: /usr/bin/python3.11 (3.11.7) -> /opt/py/bin/python3.12 (`python: python3`)"
            )
        );
        assert_eq!(changes[2], set(Attr::Install, None, "demo"));
        // A wrapper or a shim cannot be seen through without running it: no recreate.
        assert_eq!(v.venv_changes(&with(&|o| o.wanted_python = WantedPython::Script("/usr/local/bin/py".into()))), vec![]);
        assert_eq!(v.venv_changes(&with(&|o| o.wanted_python = WantedPython::NotFound)), vec![]);
        let broken =
            v.venv_changes(&with(&|o| o.broken = Some("bin/python leads to /usr/bin/python3.9, which does not exist".into())));
        assert_eq!(
            broken[..2],
            [
                Change::Create,
                set(Attr::Recreate, None, "it is broken: bin/python leads to /usr/bin/python3.9, which does not exist")
            ]
        );
    }

    #[test]
    fn the_plan_names_the_installer_when_one_runs() {
        let uv = Tool::Uv("/usr/local/bin/uv".into());
        let seen = |venv: VenvActual| Seen { venv, tool: Some(uv.clone()) };
        let changes = venv(&["demo"]).diff(&seen(VenvActual::Absent));
        assert_eq!(changes.last(), Some(&set(Attr::Installer, None, "uv (/usr/local/bin/uv)")));
        let converged = seen(observed(vec![installed("demo", "1.0", &[])]));
        assert_eq!(venv(&["demo"]).diff(&converged), vec![], "a converged venv plans nothing, whatever the tool");
        let VenvActual::Present(mut o) = observed(vec![installed("demo", "1.0", &[])]) else { unreachable!() };
        o.owner = "root".into();
        let chown = venv(&["demo"]).diff(&seen(VenvActual::Present(o)));
        assert_eq!(chown, [set(Attr::Owner, Some("root"), "app")], "no installer runs for an owner");
        let pip = Seen { venv: observed(vec![]), tool: Some(Tool::Pip) };
        assert_eq!(venv(&["demo"]).diff(&pip), [set(Attr::Install, None, "demo"), set(Attr::Installer, None, "pip")]);
    }

    #[test]
    fn owner_drift_and_absent() {
        let VenvActual::Present(mut o) = observed(vec![]) else { unreachable!() };
        o.owner = "root".into();
        assert_eq!(venv(&[]).venv_changes(&VenvActual::Present(o)), [set(Attr::Owner, Some("root"), "app")]);
        let mut gone = venv(&[]);
        gone.state = State::Absent;
        assert_eq!(gone.venv_changes(&observed(vec![])), [Change::Remove]);
        assert_eq!(gone.venv_changes(&VenvActual::Absent), vec![]);
    }
}

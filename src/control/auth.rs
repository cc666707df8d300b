//! Who is calling, from the socket's peer credentials (SO_PEERCRED), and what they may do:
//! root, the user the daemon runs as and the admin group's members may change things, the
//! socket group's members may read, anyone else is refused. Group membership is read at each request (from the group
//! database, as `id` does), so adding an operator to a group needs no restart.

use super::action::Role;
use nix::unistd::{Gid, Group, Uid, User};
use serde::Serialize;

/// The process at the other end of a connection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
    /// The user's name, if the user database knows the uid.
    pub user: Option<String>,
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.user {
            Some(u) => write!(f, "{u} (uid {})", self.uid),
            None => write!(f, "uid {}", self.uid),
        }
    }
}

impl Caller {
    pub fn new(uid: u32, gid: u32, pid: Option<i32>) -> Caller {
        let user = User::from_uid(Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name);
        Caller {
            uid,
            gid,
            pid,
            user,
        }
    }
}

/// The groups that grant access.
#[derive(Debug, Clone)]
pub struct Access {
    pub read_group: String,
    pub admin_group: String,
}

impl Access {
    /// What `caller` may do (None: nothing).
    pub fn role(&self, caller: &Caller) -> Option<Role> {
        let me = nix::unistd::geteuid().as_raw();
        if caller.uid == 0 || caller.uid == me || self.member(&self.admin_group, caller) {
            Some(Role::Admin)
        } else if self.member(&self.read_group, caller) {
            Some(Role::Reader)
        } else {
            None
        }
    }

    /// Whether the caller's primary group (as the connection reports it, or as the user
    /// database has it) is `group`, or the group lists the caller's user.
    fn member(&self, group: &str, caller: &Caller) -> bool {
        let Ok(Some(g)) = Group::from_name(group) else {
            return false;
        };
        if g.gid == Gid::from_raw(caller.gid) {
            return true;
        }
        let Ok(Some(u)) = User::from_uid(Uid::from_raw(caller.uid)) else {
            return false;
        };
        u.gid == g.gid || g.mem.contains(&u.name)
    }

    /// Why `caller` may not do an action that needs `needs`, for the 403 answer.
    pub fn refusal(&self, caller: &Caller, needs: Role) -> String {
        match needs {
            Role::Reader => format!(
                "permission denied: {caller} is not root and not in group {} (readers) or {} \
                 (operators who may change things)",
                self.read_group, self.admin_group
            ),
            Role::Admin => format!(
                "permission denied: {caller} may read but not change; changes need root or \
                 group {}",
                self.admin_group
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_may_change_and_a_stranger_may_do_nothing() {
        let access = Access {
            read_group: "prescient-no-such-group".into(),
            admin_group: "prescient-no-such-admin".into(),
        };
        assert_eq!(access.role(&Caller::new(0, 0, None)), Some(Role::Admin));
        let nobody = Caller::new(65534, 65534, None);
        if nix::unistd::geteuid().as_raw() != 65534 {
            assert_eq!(access.role(&nobody), None);
        }
        let msg = access.refusal(&nobody, Role::Reader);
        assert!(msg.contains("prescient-no-such-group"), "{msg}");
    }

    #[test]
    fn the_primary_group_of_the_connection_counts() {
        // Group "root" (gid 0) exists on every Linux host.
        let access = Access {
            read_group: "root".into(),
            admin_group: "prescient-no-such-admin".into(),
        };
        let caller = Caller::new(65534, 0, None);
        if nix::unistd::geteuid().as_raw() != 65534 {
            assert_eq!(access.role(&caller), Some(Role::Reader));
        }
    }
}

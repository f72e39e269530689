//! What a container runs: the image's entrypoint and cmd combined with the
//! pod's command and args (Docker's rules, as the kubelet applies them),
//! and `$(VAR)` references expanded against the container's environment.

use std::collections::HashMap;

/// argv from the image config and the container spec:
/// - `command` set: `command + args`; the image's entrypoint and cmd are ignored;
/// - only `args` set: `entrypoint + args`;
/// - neither: `entrypoint + cmd`.
pub fn combine(
    image_entrypoint: &[String],
    image_cmd: &[String],
    command: &[String],
    args: &[String],
) -> Vec<String> {
    if !command.is_empty() {
        command.iter().chain(args).cloned().collect()
    } else if !args.is_empty() {
        image_entrypoint.iter().chain(args).cloned().collect()
    } else {
        image_entrypoint.iter().chain(image_cmd).cloned().collect()
    }
}

/// Expand `$(NAME)` in `input` with `lookup`. As upstream: `$$` is an
/// escaped `$`, references to undefined names stay as written, and a `$`
/// not followed by `(` or `$` is kept.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let bytes = input.as_bytes();
    let mut i = 0;
    let mut last = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' || i + 1 >= bytes.len() {
            i += 1;
            continue;
        }
        out.push_str(&input[last..i]);
        match bytes[i + 1] {
            b'$' => {
                out.push('$');
                i += 2;
            }
            b'(' => match input[i + 2..].find(')') {
                Some(end) => {
                    let name = &input[i + 2..i + 2 + end];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    i += 2 + end + 1;
                }
                None => {
                    out.push_str("$(");
                    i += 2;
                }
            },
            _ => {
                // `$x`: keep both; the next char is emitted from `last`.
                out.push('$');
                i += 1;
            }
        }
        last = i;
    }
    out.push_str(&input[last..]);
    out
}

/// Expand every word of a command against the final environment.
pub fn expand_all(words: &[String], env: &[(String, String)]) -> Vec<String> {
    let map: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let lookup = |n: &str| map.get(n).map(|v| v.to_string());
    words.iter().map(|w| expand(w, &lookup)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn docker_rules() {
        let ep = s(&["/entry"]);
        let cmd = s(&["serve", "--port=80"]);
        assert_eq!(
            combine(&ep, &cmd, &[], &[]),
            s(&["/entry", "serve", "--port=80"])
        );
        assert_eq!(combine(&ep, &cmd, &[], &s(&["x"])), s(&["/entry", "x"]));
        assert_eq!(
            combine(&ep, &cmd, &s(&["sh", "-c"]), &s(&["echo hi"])),
            s(&["sh", "-c", "echo hi"])
        );
        assert_eq!(combine(&ep, &cmd, &s(&["sleep"]), &[]), s(&["sleep"]));
        assert_eq!(combine(&[], &cmd, &[], &[]), cmd);
    }

    #[test]
    fn expansion_as_upstream() {
        let env = vec![
            ("A".to_string(), "apple".to_string()),
            ("EMPTY".to_string(), String::new()),
        ];
        let e = |w: &str| expand_all(&[w.to_string()], &env).remove(0);
        assert_eq!(e("$(A)"), "apple");
        assert_eq!(e("x$(A)y$(A)"), "xappleyapple");
        assert_eq!(e("$(EMPTY)z"), "z");
        assert_eq!(e("$(MISSING)"), "$(MISSING)");
        assert_eq!(e("$$(A)"), "$(A)");
        assert_eq!(e("$$$(A)"), "$apple");
        assert_eq!(e("$A"), "$A");
        assert_eq!(e("$(A"), "$(A");
        assert_eq!(e("cost $"), "cost $");
        assert_eq!(e("$()"), "$()");
        assert_eq!(e("héllo $(A) wörld"), "héllo apple wörld");
    }
}

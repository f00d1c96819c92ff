"""Patches kwok's pod controller to delete a pod only if it is still the same pod (UID
precondition), as a kubelet does. Without it, kwok's queued deletion of a pod that was just
deleted lands on its successor of the same name — every pod the controller replaces (fixed
names per bot) was deleted again by kwok, often several times. A 404 or 409 then means "the pod
it meant is gone", not an error to retry forever.

Usage: python3 kwok-delete-uid-precondition.py <kwok module dir>. Fails if the code to patch
is not found exactly once (the pinned kwok version changed).
"""

import sys
from pathlib import Path

FILE = "pkg/kwok/controllers/pod_controller.go"
OLD = """	err := c.typedClient.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, deleteOpt)
	if err != nil {
		return err
	}
"""
NEW = """	opt := deleteOpt
	opt.Preconditions = metav1.NewUIDPreconditions(string(pod.UID))
	err := c.typedClient.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, opt)
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // the pod it meant is gone; a new pod may have its name: never delete that
	}
	if err != nil {
		return err
	}
"""
IMPORT_OLD = '\t"k8s.io/apimachinery/pkg/api/meta"\n'
IMPORT_NEW = '\tapierrors "k8s.io/apimachinery/pkg/api/errors"\n' + IMPORT_OLD


def main(module_dir: str) -> int:
    path = Path(module_dir) / FILE
    text = path.read_text()
    for old in (OLD, IMPORT_OLD):
        if text.count(old) != 1:
            print(f"kwok patch: expected code not found exactly once in {path}", file=sys.stderr)
            return 1
    path.write_text(text.replace(OLD, NEW).replace(IMPORT_OLD, IMPORT_NEW))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

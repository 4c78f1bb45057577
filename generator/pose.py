"""OpenPose JSON -> the OpenPose skeleton picture an openpose ControlNet was trained on.

Reads the JSON that openpose-editor and web UI's ControlNet extension export (OpenPose's own
output format): `people[].pose_keypoints_2d` (18 COCO points, or OpenPose's BODY_25, mapped to
COCO), optional `hand_left/right_keypoints_2d` and `face_keypoints_2d`, as flat [x, y, c, ...]
lists, plus `canvas_width` / `canvas_height`. Coordinates are pixels, or fractions of the canvas
when every point lies in [0, 1] (the extension's rule).

Drawn as the ControlNet extension draws it (annotator/openpose/util.py): black canvas; each limb a
filled ellipse 4 px thick in its colour at 60 %; each joint a 4 px disc in full colour; hand bones
2 px lines coloured around the hue circle with red joints; face points as white 3 px dots. A point
is present when its confidence is above 0 (the editors write 1 and 0).
"""

from __future__ import annotations

import colorsys
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from generator.errors import GenerationError

# COCO-18 limbs (1-based, OpenPose's order) and the 18 standard colours (RGB)
LIMBS = (
    (2, 3), (2, 6), (3, 4), (4, 5), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11),
    (2, 12), (12, 13), (13, 14), (2, 1), (1, 15), (15, 17), (1, 16), (16, 18),
)  # fmt: skip
COLORS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)  # fmt: skip
HAND_EDGES = (
    (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10),
    (10, 11), (11, 12), (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19),
    (19, 20),
)  # fmt: skip
# BODY_25 index of each COCO-18 point (BODY_25 adds MidHip at 8 and the feet at 19-24)
BODY25_TO_COCO = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)
_EPS = 0.01

Point = tuple[float, float] | None


def _points(numbers: Any, what: str) -> list[Point]:
    if not numbers:
        return []
    if not isinstance(numbers, list) or len(numbers) % 3:
        raise GenerationError(f"pose JSON: {what} must be a flat list of x, y, confidence triples")
    try:
        triples = [(float(x), float(y), float(c)) for x, y, c in zip(*[iter(numbers)] * 3)]
    except (TypeError, ValueError) as exc:
        raise GenerationError(f"pose JSON: {what} holds a value that is not a number") from exc
    return [(x, y) if c > 0 else None for x, y, c in triples]


class Pose:
    """The people of one pose JSON and its canvas size."""

    def __init__(self, data: Any) -> None:
        if not isinstance(data, dict) or not isinstance(data.get("people"), list):
            raise GenerationError(
                "pose JSON: expected an object with a 'people' list (OpenPose's format, as "
                "openpose-editor and the ControlNet extension export it)"
            )
        try:
            self.width = int(data["canvas_width"])
            self.height = int(data["canvas_height"])
        except (KeyError, TypeError, ValueError) as exc:
            raise GenerationError("pose JSON: needs canvas_width and canvas_height") from exc
        if not (8 <= self.width <= 8192 and 8 <= self.height <= 8192):
            raise GenerationError(f"pose JSON: canvas {self.width}x{self.height} is not a size")
        self.people: list[dict[str, list[Point]]] = []
        for n, person in enumerate(data["people"]):
            if not isinstance(person, dict):
                raise GenerationError(f"pose JSON: people[{n}] is not an object")
            body = _points(person.get("pose_keypoints_2d"), f"people[{n}].pose_keypoints_2d")
            if len(body) == 25:
                body = [body[i] for i in BODY25_TO_COCO]
            elif body and len(body) != 18:
                raise GenerationError(
                    f"pose JSON: people[{n}] has {len(body)} body points; expected 18 (COCO) "
                    "or 25 (BODY_25)"
                )
            self.people.append(
                {
                    "body": body,
                    "hand_left": _points(person.get("hand_left_keypoints_2d"), "hand_left"),
                    "hand_right": _points(person.get("hand_right_keypoints_2d"), "hand_right"),
                    "face": _points(person.get("face_keypoints_2d"), "face"),
                }
            )
        if not any(p for person in self.people for part in person.values() for p in part):
            raise GenerationError("pose JSON: no person has a keypoint to draw")

    @classmethod
    def load(cls, path: str | Path) -> Pose:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise GenerationError(f"--pose {path}: cannot read it ({exc.strerror or exc})") from exc
        except ValueError as exc:
            raise GenerationError(f"--pose {path}: not JSON ({exc})") from exc
        # web UI's extension saves a list of poses (one per batch image); take the first
        if isinstance(data, list) and data:
            data = data[0]
        return cls(data)

    def render(self) -> Any:
        """The skeleton picture (PIL RGB, canvas size)."""
        from PIL import Image

        canvas = np.zeros((self.height, self.width, 3), dtype=np.uint8)
        for person in self.people:
            _draw_body(canvas, person["body"])
            _draw_hand(canvas, person["hand_left"])
            _draw_hand(canvas, person["hand_right"])
            _draw_face(canvas, person["face"])
        return Image.fromarray(canvas)


def _scale(points: list[Point], canvas: np.ndarray) -> tuple[float, float]:
    """Fractions of the canvas when every point is in [0, 1]; pixels otherwise."""
    present = [p for p in points if p is not None]
    if present and all(0 <= abs(x) <= 1 and 0 <= abs(y) <= 1 for x, y in present):
        return float(canvas.shape[1]), float(canvas.shape[0])
    return 1.0, 1.0


def _draw_body(canvas: np.ndarray, points: list[Point]) -> None:
    import cv2

    if not points:
        return
    sx, sy = _scale(points, canvas)
    for (a, b), color in zip(LIMBS, COLORS):
        p1, p2 = points[a - 1], points[b - 1]
        if p1 is None or p2 is None:
            continue
        xs = np.array([p1[0], p2[0]]) * sx
        ys = np.array([p1[1], p2[1]]) * sy
        length = math.hypot(xs[0] - xs[1], ys[0] - ys[1])
        angle = math.degrees(math.atan2(ys[0] - ys[1], xs[0] - xs[1]))
        centre = (int(np.mean(xs)), int(np.mean(ys)))
        polygon = cv2.ellipse2Poly(centre, (int(length / 2), 4), int(angle), 0, 360, 1)
        # ellipse2Poly returns an (N, 2) int32 array (OpenCV's stubs say a list): no copy
        cv2.fillConvexPoly(canvas, np.asarray(polygon), [int(c * 0.6) for c in color])
    for point, color in zip(points, COLORS):
        if point is not None:
            cv2.circle(canvas, (int(point[0] * sx), int(point[1] * sy)), 4, color, thickness=-1)


def _draw_hand(canvas: np.ndarray, points: list[Point]) -> None:
    import cv2

    if not points:
        return
    sx, sy = _scale(points, canvas)
    for i, (a, b) in enumerate(HAND_EDGES):
        if a >= len(points) or b >= len(points) or points[a] is None or points[b] is None:
            continue
        x1, y1 = int(points[a][0] * sx), int(points[a][1] * sy)  # type: ignore[index]
        x2, y2 = int(points[b][0] * sx), int(points[b][1] * sy)  # type: ignore[index]
        if min(x1, y1, x2, y2) > _EPS:
            rgb = [c * 255 for c in colorsys.hsv_to_rgb(i / len(HAND_EDGES), 1.0, 1.0)]
            cv2.line(canvas, (x1, y1), (x2, y2), rgb, thickness=2)
    for point in points:
        if point is not None:
            x, y = int(point[0] * sx), int(point[1] * sy)
            if x > _EPS and y > _EPS:
                cv2.circle(canvas, (x, y), 4, (0, 0, 255), thickness=-1)


def _draw_face(canvas: np.ndarray, points: list[Point]) -> None:
    import cv2

    if not points:
        return
    sx, sy = _scale(points, canvas)
    for point in points:
        if point is not None:
            x, y = int(point[0] * sx), int(point[1] * sy)
            if x > _EPS and y > _EPS:
                cv2.circle(canvas, (x, y), 3, (255, 255, 255), thickness=-1)

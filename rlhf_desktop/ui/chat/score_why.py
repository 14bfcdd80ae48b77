"""The words of "why it ranked here" (a card) and of the turn's confidence (its header)."""

from __future__ import annotations

from html import escape

from rlhf_desktop.services.ranking.rewards import ScoreParts, TurnExplanation
from rlhf_desktop.services.ranking.words import driver_text, signed

UNSURE_COLOR = "#d29922"


def card_why(part: ScoreParts, position: int, n: int, explained_by: int | None,
             ranked_by: int | None) -> str:
    """A card's explanation as rich text: the score split into style and content, the
    same parts against the turn's average (what orders the cards), and the style drivers."""
    lines = [
        f"<b>#{position + 1} of {n}</b> · score {signed(part.score)} = "
        f"style {signed(part.style)} + content {signed(part.content)}",
        f"Against this turn's average: style <b>{signed(part.style_vs_mean)}</b> · "
        f"content <b>{signed(part.content_vs_mean)}</b>",
    ]
    if part.drivers:
        lines.append("Style: " + " · ".join(escape(driver_text(name, logit))
                                            for name, logit in part.drivers))
    else:
        lines.append("Style: no feature stands out against the other replies")
    lines.append(f"<i>{main_reason(part)}</i>")
    if explained_by != ranked_by and ranked_by is not None:
        lines.append(f"(explained by reward model v{explained_by}, the one in use; ranked by "
                     f"reward model v{ranked_by})")
    return "<br>".join(lines)


def main_reason(part: ScoreParts) -> str:
    """Which part moved this reply more, in one sentence."""
    style, content = part.style_vs_mean, part.content_vs_mean
    if abs(style) < 0.01 and abs(content) < 0.01:
        return "It scores about the same as the others."
    bigger = "its form (style)" if abs(style) >= abs(content) else "what it says (content)"
    way = "up" if (style if abs(style) >= abs(content) else content) > 0 else "down"
    return f"Mostly {bigger} moved it {way}."


def confidence_text(why: TurnExplanation, top: int = 1, runner_up: int | None = 2,
                    copies: tuple[int, ...] = ()) -> tuple[str, str]:
    """(badge text, tooltip) for the turn header: how sure the model is that the reply at
    place ``top`` beats ``runner_up``, the best reply that is *different* from it (places
    are 1-based). ``copies`` are the places of the replies that are the same reply as the
    top one (a tie by design, never compared); None for ``runner_up``: every whole reply is
    the same reply."""
    same = ""
    if copies:
        places = ", ".join(f"#{p}" for p in copies)
        same = (f" {places} {'is' if len(copies) == 1 else 'are'} the same reply as #{top}: "
                "a tie, not compared.")
    if runner_up is None:
        if not copies or why.version is None:
            return "", ""
        return (f"top replies are the same (#{top}, " + ", ".join(f"#{p}" for p in copies)
                + ")", "The replies are the same reply: a pick among them is saved as a tie, "
                "so there is nothing to rank between them.")
    if why.p_top is None:
        return "", ""
    pct = f"{why.p_top * 100:.0f} %"
    tip = (f"Reward model v{why.version}: P(#{top} is better than #{runner_up}) = {pct}, "
           f"calibrated on your labels. Below {why.unsure_below * 100:.0f} % the ranking is "
           f"unsure, and your pick teaches the model most. ({why.metric}){same}")
    if why.unsure:
        return f"unsure · #{top} beats #{runner_up}: {pct}", tip
    return f"#{top} beats #{runner_up}: {pct}", tip

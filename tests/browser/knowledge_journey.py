"""A user's first knowledge base, step by step in the browser: the same journey on every tier.

The caller gives the site's URL, the admin's credentials and how to take one api replica away
(stop a process on loopback, delete a pod on the cluster). The steps: sign in (creating the
first admin when the site has none), create a knowledge base, upload a document with indexing
on and see it indexed, ask the agent about it, lose one replica, reload and still see the
conversation, the knowledge base and its indexed document, and get an answer from what is left.
The agent's configuration (its model and the knowledge base as its tool) is set through the API:
the step a user takes in the agent's settings panel is not what this journey is about.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.app.full_mode import DOCUMENT, EMBED_MODEL
from tests.browser.harness import Journey

CHAT_MODEL = "standin/standin-chat"
ANSWER_START = "stand-in answer from query_kb"  # the stand-in's answer when the agent used the tool
ANSWER_WAIT_MS = 120_000
INDEX_WAIT_S, REFRESH_EVERY_S = 120, 5


def _consent(form: Any) -> None:
    """Tick the user-agreement box where the site shows one."""
    box = form.locator(".agreement-row input[type=checkbox]")
    if box.count():
        box.check()


def sign_in(seen: Journey, base: str, admin: tuple[str, str]) -> None:
    """Create the first admin if the site asks for one, then log in; ends on the agent page."""
    page = seen.page
    page.goto(base + "/login")
    page.wait_for_load_state("networkidle")
    init = page.locator(".login-form--init")
    if init.count():
        init.locator("input").first.fill(admin[0])  # the user id; the phone number is optional
        passwords = init.locator("input[type=password]")
        passwords.nth(0).fill(admin[1])
        passwords.nth(1).fill(admin[1])
        _consent(init)
        seen.shot("first-admin")
        init.locator("button[type=submit]").click()
        page.wait_for_url(lambda url: not url.endswith("/login"))
        page.goto(base + "/agent")
        page.wait_for_load_state("networkidle")
    if page.url.endswith("/login"):  # not logged in by the admin's creation, or an admin existed
        form = page.locator(".login-form")
        form.locator("input").first.fill(admin[0])
        form.locator("input[type=password]").fill(admin[1])
        _consent(form)
        seen.shot("login")
        form.locator("button[type=submit]").click()
    page.wait_for_url("**/agent**")
    seen.shot("logged-in")


def wait_indexed(page: Any, file_name: str) -> int:
    """Wait for the file's row to show it indexed; returns how often the list's refresh button was
    pressed. The page refreshes itself every 5 s only while a file shows a processing status
    (waiting, parsing, indexing), and checks once, a second after the upload. A file is stored
    ``uploaded`` until its task starts and ``parsed`` between the parse and the index steps:
    when that one read lands on either, the page stops refreshing and a user presses refresh
    (needed in 2 of the first 5 runs here; the application's own timing, as with one replica)."""
    done = page.locator("tr", has_text=file_name).locator(".anticon-check-circle")
    for pressed in range(INDEX_WAIT_S // REFRESH_EVERY_S):
        try:
            done.wait_for(timeout=REFRESH_EVERY_S * 1000)
            return pressed
        except PlaywrightTimeout:
            page.locator("button[title='刷新']").click()
    done.wait_for(timeout=REFRESH_EVERY_S * 1000)
    return INDEX_WAIT_S // REFRESH_EVERY_S


def give_agent_the_knowledge_base(base: str, admin: tuple[str, str], name: str) -> None:
    """The chat agent's configuration (the stand-in model, the knowledge base as its tool)."""
    form = {"username": admin[0], "password": admin[1]}
    token = httpx.post(base + "/api/auth/token", data=form, timeout=30).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    configs = httpx.get(base + "/api/chat/agent/ChatbotAgent/configs", headers=auth, timeout=30).json()
    config_id = configs["configs"][0]["id"]
    context = {"model": CHAT_MODEL, "tools": [], "knowledges": [name]}
    answer = httpx.put(
        f"{base}/api/chat/agent/ChatbotAgent/configs/{config_id}",
        headers=auth,
        json={"config_json": {"context": context}},
        timeout=30,
    )
    answer.raise_for_status()


def _ask(page: Any, question: str) -> None:
    page.locator("textarea.user-input").fill(question)
    page.locator("button.send-button").click()


def first_knowledge_base(
    seen: Journey,
    base: str,
    admin: tuple[str, str],
    work: Path,
    lose_one_replica: Callable[[], None],
) -> None:
    """The whole journey on the site at *base*; *work* holds the uploaded document."""
    page = seen.page
    kb_name = f"lighthouse-{uuid.uuid4().hex[:6]}"
    question = f'What does the knowledge base "{kb_name}" say about who cleans the Harbour Lighthouse lamp?'
    document = work / "lighthouse.md"
    document.write_text(DOCUMENT)
    sign_in(seen, base, admin)

    # A knowledge base (Milvus, the stand-in's embedding model).
    page.goto(base + "/database")
    page.get_by_role("button", name="新建知识库").first.click()
    page.get_by_placeholder("新建知识库名称").fill(kb_name)
    # The form takes the site's embedding model as its default only if the settings had loaded
    # when the page was built (upstream's DataBaseView): choose it, as a user then must.
    page.locator(".new-database-modal .ant-select").first.click()
    page.locator(".ant-select-item-option", has_text=EMBED_MODEL).first.click()
    seen.shot("new-knowledge-base")
    page.locator(".ant-modal-footer button.ant-btn-primary").click()
    page.get_by_text(kb_name).first.wait_for()
    seen.shot("knowledge-base-made")

    # A document, uploaded with indexing on, shown indexed.
    page.get_by_text(kb_name).first.click()
    page.wait_for_url("**/database/**")
    page.locator("button.upload-btn").click()
    page.get_by_text("上传后自动入库").click()
    page.locator(".ant-modal input[type=file]").set_input_files(str(document))
    page.get_by_text(document.name).first.wait_for()
    seen.shot("document-uploaded")
    page.get_by_role("button", name="添加到知识库").click()
    seen.note(f"refreshes until shown indexed: {wait_indexed(page, document.name)}")
    seen.shot("document-indexed")
    kb_url = page.url

    # The agent, given the knowledge base, answers from it.
    give_agent_the_knowledge_base(base, admin, kb_name)
    page.goto(base + "/agent")
    _ask(page, question)
    page.get_by_text("Coastal Guild").first.wait_for(timeout=ANSWER_WAIT_MS)
    seen.shot("agent-answer")
    thread_url = page.url
    assert "/agent/" in thread_url, thread_url

    # One replica goes (a rollout, a node lost); the other serves everything.
    lose_one_replica()
    page.reload()
    page.get_by_text("Coastal Guild").first.wait_for(timeout=ANSWER_WAIT_MS)
    assert page.get_by_text(question).count() >= 1, "the question is gone after the reload"
    seen.shot("conversation-after-reload")
    page.goto(kb_url)
    wait_indexed(page, document.name)
    seen.shot("knowledge-base-after-reload")
    page.goto(thread_url)
    page.get_by_text("Coastal Guild").first.wait_for(timeout=ANSWER_WAIT_MS)
    _ask(page, f'Once more: what does the knowledge base "{kb_name}" say about the lens?')
    page.get_by_text(ANSWER_START).nth(1).wait_for(timeout=ANSWER_WAIT_MS)
    page.get_by_text("Coastal Guild").nth(1).wait_for(timeout=ANSWER_WAIT_MS)  # streamed to its end
    seen.shot("answer-from-the-other-replica")
    assert not seen.problems(), "\n".join(seen.problems())

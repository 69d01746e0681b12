/** The chat: messages to everyone in the meeting, over the `chat` data topic. */
import { useEffect, useRef, useState, type FormEvent } from "react";
import { Button, Form, Input, Label, TextField } from "react-aria-components";
import { useI18n } from "../../i18n";
import type { ChatMessage } from "./chat";

export function ChatPanel({ messages, onSend }: { messages: ChatMessage[]; onSend: (text: string) => void }) {
  const { t, language } = useI18n();
  const [draft, setDraft] = useState("");
  const list = useRef<HTMLOListElement>(null);
  useEffect(() => {
    list.current?.lastElementChild?.scrollIntoView({ block: "end" });
  }, [messages.length]);
  const time = new Intl.DateTimeFormat(language, { hour: "2-digit", minute: "2-digit" });

  function submit(event: FormEvent) {
    event.preventDefault();
    const text = draft.trim();
    if (!text) return;
    onSend(text);
    setDraft("");
  }

  return (
    <div className="chat">
      {messages.length === 0 && <p className="hint">{t("chat.empty")}</p>}
      <ol className="chat-messages" ref={list} aria-live="polite">
        {messages.map((message) => (
          <li key={message.id} className={message.isLocal ? "mine" : undefined}>
            <div className="chat-meta">
              <strong>{message.isLocal ? t("meeting.you", { name: message.name }) : message.name}</strong> <time>{time.format(message.at)}</time>
            </div>
            <p className="chat-text">{message.text}</p>
          </li>
        ))}
      </ol>
      <Form className="chat-form" onSubmit={submit}>
        <TextField className="field grow" value={draft} onChange={setDraft} maxLength={2000} aria-label={t("chat.placeholder")}>
          <Label className="visually-hidden">{t("chat.placeholder")}</Label>
          <Input placeholder={t("chat.placeholder")} autoComplete="off" />
        </TextField>
        <Button type="submit" className="button primary" isDisabled={!draft.trim()}>
          {t("chat.send")}
        </Button>
      </Form>
    </div>
  );
}

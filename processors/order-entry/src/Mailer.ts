/**
 * Outgoing e-mail through nodemailer. Without SMTP configured the message is rendered by the
 * JSON transport and kept in the store (`emails.message`), so the reference app sends nothing.
 */
import nodemailer from "nodemailer"

export interface Mail {
  readonly to: string
  readonly subject: string
  readonly text: string
}

export interface Sent {
  readonly messageId: string
  /** The rendered message when nothing left the process (JSON transport). */
  readonly message: string | undefined
}

export interface Mailer {
  readonly transport: "store" | "smtp"
  readonly send: (mail: Mail) => Promise<Sent>
}

export const make = (options: { readonly smtpUrl?: string | undefined; readonly from?: string } = {}): Mailer => {
  const from = options.from ?? "Baton Books <orders@baton.example>"
  const smtp = options.smtpUrl !== undefined && options.smtpUrl !== ""
  const transport = smtp ? nodemailer.createTransport(options.smtpUrl) : nodemailer.createTransport({ jsonTransport: true })
  return {
    transport: smtp ? "smtp" : "store",
    send: async (mail) => {
      const info = await transport.sendMail({ from, to: mail.to, subject: mail.subject, text: mail.text })
      const message = (info as { message?: unknown }).message
      return { messageId: String(info.messageId), message: typeof message === "string" ? message : undefined }
    }
  }
}

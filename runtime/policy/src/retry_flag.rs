//! The retry indicator in a callback response body.
//!
//! The reference connector reads the response body line by line, joins the
//! lines with no separator, parses the result with Gson 2.8.9
//! (`JsonParser.parseString`, lenient while reading the value, then a strict
//! check that nothing but whitespace follows it) and finally calls
//! `getAsBoolean()` on the top-level object's `retry` member. Any exception
//! on the way means "no usable flag". [`parse_retry_flag`] reproduces that
//! decision without building a document tree and without allocating: it
//! streams over the bytes, skips every value it does not need, and only
//! compares the `retry` member's value against `true` as it goes.
//!
//! Working on bytes instead of decoded characters gives the same answer as
//! the reference's lossy UTF-8 decoding: every character that Gson treats
//! specially is ASCII, an ASCII byte is never part of a multi-byte sequence
//! (the JDK decoder does not swallow one into a malformed sequence either),
//! and a non-ASCII character, replacement character or not, never equals
//! an ASCII letter of `retry` or `true`.
//!
//! Gson behaviours that matter here and are easy to get wrong:
//! - The non-execute prefix Gson skips is `)]}'` followed by a newline. The
//!   reference removes every newline before parsing, so the prefix can never
//!   match: a body starting with `)]}'` is not JSON to it.
//! - Since Gson 2.7 an unknown escape such as `\x` is a syntax error.
//! - `//` and `#` comments run to the end of the line, which (newlines being
//!   removed) is the end of the body, so they always leave the document
//!   unfinished.
//! - Only space and tab count as whitespace (plus the removed CR and LF);
//!   form feed does not.
//! - One leading byte order mark is skipped.

/// What a response body says about retrying, as the reference reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryFlag {
    /// The body is a JSON object whose `retry` member converts to `true`.
    Retry,
    /// The body is a JSON object whose `retry` member converts to `false`.
    NoRetry,
    /// No usable flag: not a (lenient) JSON object, trailing text after it,
    /// no `retry` member, or a member that does not convert to a boolean
    /// (`null`, an object, an array whose length is not one).
    Absent,
}

/// Deepest nesting of objects and arrays accepted; deeper bodies are
/// [`RetryFlag::Absent`]. Gson itself fails with a stack overflow at a
/// depth of some thousands that depends on the JVM's thread stack.
pub const MAX_DEPTH: usize = 512;

/// Reads the retry flag from a callback response body.
///
/// Returns [`RetryFlag::Absent`] whenever the reference (Gson 2.8.9) fails
/// to parse the body as a JSON object or fails to convert its `retry`
/// member to a boolean. Conversion follows Gson's `getAsBoolean`: a boolean
/// is itself; a string or number is `true` only if its text is `true`
/// ignoring ASCII case (so `"yes"`, `1` and `1.0` mean no retry); an array
/// of exactly one element converts that element; anything else is absent.
/// If `retry` occurs more than once, the last occurrence wins.
///
/// Never panics and never allocates.
#[must_use]
pub fn parse_retry_flag(body: &[u8]) -> RetryFlag {
    parse_document(body).unwrap_or(RetryFlag::Absent)
}

/// The marker for "the reference would have thrown here".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Malformed;

type Parsed<T> = Result<T, Malformed>;

/// UTF-8 encoding of U+FEFF, which Gson skips at the very start.
const BYTE_ORDER_MARK: &[u8] = b"\xEF\xBB\xBF";

fn parse_document(body: &[u8]) -> Parsed<RetryFlag> {
    let mut cur = Cursor::new(body);
    cur.skip_byte_order_mark();
    match cur.peek_significant()? {
        Some(b'{') => {
            cur.bump();
            let flag = parse_root_object(&mut cur)?;
            if cur.only_blanks_remain() {
                Ok(flag)
            } else {
                Err(Malformed)
            }
        }
        // Empty document (Gson: JsonNull), or a top-level value that is not
        // an object: either way `getAsJsonObject` fails.
        _ => Ok(RetryFlag::Absent),
    }
}

/// A position in the body that steps over CR and LF bytes as if they were
/// not there (the reference joins lines without a separator).
#[derive(Debug, Clone, Copy)]
struct Cursor<'a> {
    bytes: &'a [u8],
    /// Always at a byte that is not CR or LF, or at the end.
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        let mut cur = Cursor { bytes, pos: 0 };
        cur.skip_line_breaks();
        cur
    }

    fn skip_line_breaks(&mut self) {
        while matches!(self.bytes.get(self.pos), Some(b'\r' | b'\n')) {
            self.pos += 1;
        }
    }

    /// The BOM must be contiguous: bytes split by a line break are three
    /// malformed characters to the JDK decoder, not a BOM.
    fn skip_byte_order_mark(&mut self) {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        if rest.starts_with(BYTE_ORDER_MARK) {
            self.pos += BYTE_ORDER_MARK.len();
            self.skip_line_breaks();
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn bump(&mut self) {
        if self.pos < self.bytes.len() {
            self.pos += 1;
            self.skip_line_breaks();
        }
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.bump();
        Some(byte)
    }

    /// The byte after the current one, line breaks skipped.
    fn peek_second(&self) -> Option<u8> {
        let mut ahead = *self;
        ahead.bump();
        ahead.peek()
    }

    fn skip_to_end(&mut self) {
        self.pos = self.bytes.len();
    }

    /// Gson's `nextNonWhitespace` in lenient mode, without consuming the
    /// byte it stops at: skips spaces, tabs and comments. `None` is the end
    /// of the body; an unterminated `/* */` comment is an error.
    fn peek_significant(&mut self) -> Parsed<Option<u8>> {
        loop {
            match self.peek() {
                Some(b' ' | b'\t') => self.bump(),
                Some(b'#') => self.skip_to_end(),
                Some(b'/') => match self.peek_second() {
                    Some(b'/') => self.skip_to_end(),
                    Some(b'*') => self.skip_block_comment()?,
                    _ => return Ok(Some(b'/')),
                },
                other => return Ok(other),
            }
        }
    }

    /// At `/*`: moves past the closing `*/`, which may not overlap the
    /// opening one (`/*/` does not close).
    fn skip_block_comment(&mut self) -> Parsed<()> {
        self.bump();
        self.bump();
        let mut previous_was_star = false;
        while let Some(byte) = self.next() {
            if previous_was_star && byte == b'/' {
                return Ok(());
            }
            previous_was_star = byte == b'*';
        }
        Err(Malformed)
    }

    /// Gson's strict end-of-document check: only whitespace may follow the
    /// top-level value; a comment or any other text is an error.
    fn only_blanks_remain(&self) -> bool {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        rest.iter()
            .all(|byte| matches!(byte, b' ' | b'\t' | b'\r' | b'\n'))
    }
}

/// Whether Gson accepts `byte` inside an unquoted literal (`isLiteral`).
fn is_literal(byte: u8) -> bool {
    !matches!(
        byte,
        b'/' | b'\\'
            | b';'
            | b'#'
            | b'='
            | b'{'
            | b'}'
            | b'['
            | b']'
            | b':'
            | b','
            | b' '
            | b'\t'
            | 0x0C
            | b'\r'
            | b'\n'
    )
}

/// Compares a string's UTF-16 code units, as they are decoded, with an
/// ASCII target.
#[derive(Debug, Clone, Copy)]
struct Matcher {
    target: &'static [u8],
    ignore_case: bool,
    matched: usize,
    failed: bool,
}

impl Matcher {
    /// Matches `retry` exactly (a member name).
    const RETRY_NAME: Matcher = Matcher::new(b"retry", false);
    /// Matches `true` ignoring ASCII case (Java's `Boolean.parseBoolean`;
    /// no non-ASCII character case-folds to one of its letters).
    const TRUE_TEXT: Matcher = Matcher::new(b"true", true);

    const fn new(target: &'static [u8], ignore_case: bool) -> Self {
        Matcher {
            target,
            ignore_case,
            matched: 0,
            failed: false,
        }
    }

    fn push(&mut self, unit: u16) {
        if self.failed {
            return;
        }
        let expected = self.target.get(self.matched).copied();
        let same = match (expected, u8::try_from(unit)) {
            (Some(want), Ok(got)) if self.ignore_case => want.eq_ignore_ascii_case(&got),
            (Some(want), Ok(got)) => want == got,
            _ => false,
        };
        if same {
            self.matched += 1;
        } else {
            self.failed = true;
        }
    }

    /// A raw byte of the body. Non-ASCII bytes belong to characters that
    /// never match an ASCII target.
    fn push_byte(&mut self, byte: u8) {
        if byte.is_ascii() {
            self.push(u16::from(byte));
        } else {
            self.failed = true;
        }
    }

    fn is_match(&self) -> bool {
        !self.failed && self.matched == self.target.len()
    }
}

/// Reads a quoted string whose opening quote is consumed, through the
/// closing quote, feeding its decoded code units to `matcher`.
fn scan_quoted(cur: &mut Cursor<'_>, quote: u8, matcher: &mut Matcher) -> Parsed<()> {
    loop {
        match cur.next().ok_or(Malformed)? {
            byte if byte == quote => return Ok(()),
            b'\\' => matcher.push(read_escape(cur)?),
            byte => matcher.push_byte(byte),
        }
    }
}

/// Gson's `readEscapeCharacter`, after the backslash.
fn read_escape(cur: &mut Cursor<'_>) -> Parsed<u16> {
    let unit = match cur.next().ok_or(Malformed)? {
        b'u' => return read_unicode_escape(cur),
        b't' => 0x09,
        b'b' => 0x08,
        b'n' => 0x0A,
        b'r' => 0x0D,
        b'f' => 0x0C,
        byte @ (b'\'' | b'"' | b'\\' | b'/') => byte,
        _ => return Err(Malformed),
    };
    Ok(u16::from(unit))
}

fn read_unicode_escape(cur: &mut Cursor<'_>) -> Parsed<u16> {
    let mut unit: u16 = 0;
    for _ in 0..4 {
        let byte = cur.next().ok_or(Malformed)?;
        let digit = char::from(byte).to_digit(16).ok_or(Malformed)?;
        // Four hex digits always fit in 16 bits.
        unit = (unit << 4) | u16::try_from(digit).map_err(|_| Malformed)?;
    }
    Ok(unit)
}

/// Reads an unquoted literal (name, keyword, number or lenient string) up
/// to the first byte that cannot be part of one. The caller has checked
/// that the first byte is a literal byte.
fn scan_unquoted(cur: &mut Cursor<'_>, matcher: &mut Matcher) {
    while let Some(byte) = cur.peek() {
        if !is_literal(byte) {
            return;
        }
        matcher.push_byte(byte);
        cur.bump();
    }
}

/// What a scalar converts to. Keywords match per character in either
/// case (Gson's `peekKeyword`); numbers and unquoted strings convert by
/// their text, which is `true` only for the keyword itself.
fn classify_literal(cur: &mut Cursor<'_>) -> RetryFlag {
    let mut is_true = Matcher::TRUE_TEXT;
    let mut is_null = Matcher::new(b"null", true);
    while let Some(byte) = cur.peek() {
        if !is_literal(byte) {
            break;
        }
        is_true.push_byte(byte);
        is_null.push_byte(byte);
        cur.bump();
    }
    if is_true.is_match() {
        RetryFlag::Retry
    } else if is_null.is_match() {
        RetryFlag::Absent
    } else {
        // `false`, a number or an unquoted string other than `true`.
        RetryFlag::NoRetry
    }
}

/// One parsing event inside the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// A complete scalar, with what it converts to.
    Scalar(RetryFlag),
    /// An object or array was opened.
    Open(Kind),
    /// The innermost open object or array was closed.
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Object,
    Array,
}

/// Reads a value in a position where one is required (after a name, or an
/// array element that is not the lenient empty element).
fn start_value(cur: &mut Cursor<'_>) -> Parsed<Step> {
    match cur.peek().ok_or(Malformed)? {
        quote @ (b'"' | b'\'') => {
            cur.bump();
            let mut matcher = Matcher::TRUE_TEXT;
            scan_quoted(cur, quote, &mut matcher)?;
            Ok(Step::Scalar(if matcher.is_match() {
                RetryFlag::Retry
            } else {
                RetryFlag::NoRetry
            }))
        }
        b'{' => {
            cur.bump();
            Ok(Step::Open(Kind::Object))
        }
        b'[' => {
            cur.bump();
            Ok(Step::Open(Kind::Array))
        }
        byte if is_literal(byte) => Ok(Step::Scalar(classify_literal(cur))),
        _ => Err(Malformed),
    }
}

/// One open object or array.
#[derive(Debug, Clone, Copy)]
struct Frame {
    kind: Kind,
    /// Gson's NONEMPTY_* scope: a separator or the end must come next.
    nonempty: bool,
    /// Elements of an array, counted up to two.
    elements: u8,
    /// Conversion of an array's first element.
    first: RetryFlag,
}

impl Frame {
    const EMPTY: Frame = Frame::new(Kind::Object);

    const fn new(kind: Kind) -> Self {
        Frame {
            kind,
            nonempty: false,
            elements: 0,
            first: RetryFlag::Absent,
        }
    }

    fn add_element(&mut self, flag: RetryFlag) {
        if self.elements == 0 {
            self.first = flag;
        }
        self.elements = self.elements.saturating_add(1).min(2);
    }

    /// Gson's `getAsBoolean` on the finished container: an array of one
    /// element converts that element; anything else fails.
    fn conversion(&self) -> RetryFlag {
        match self.kind {
            Kind::Array if self.elements == 1 => self.first,
            _ => RetryFlag::Absent,
        }
    }
}

/// The open containers, innermost last; fixed size so parsing never
/// allocates.
struct Stack {
    frames: [Frame; MAX_DEPTH],
    len: usize,
}

impl Stack {
    fn new() -> Self {
        Stack {
            frames: [Frame::EMPTY; MAX_DEPTH],
            len: 0,
        }
    }

    fn push(&mut self, kind: Kind) -> Parsed<()> {
        let slot = self.frames.get_mut(self.len).ok_or(Malformed)?;
        *slot = Frame::new(kind);
        self.len += 1;
        Ok(())
    }

    fn pop(&mut self) -> Parsed<Frame> {
        self.len = self.len.checked_sub(1).ok_or(Malformed)?;
        self.frames.get(self.len).copied().ok_or(Malformed)
    }

    fn top(&mut self) -> Parsed<&mut Frame> {
        let index = self.len.checked_sub(1).ok_or(Malformed)?;
        self.frames.get_mut(index).ok_or(Malformed)
    }
}

/// Parses the top-level object (its `{` consumed) and everything inside
/// it, returning the conversion of the last `retry` member.
fn parse_root_object(cur: &mut Cursor<'_>) -> Parsed<RetryFlag> {
    let mut stack = Stack::new();
    stack.push(Kind::Object)?;
    let mut flag = RetryFlag::Absent;
    let mut member_is_retry = false;
    loop {
        let at_root = stack.len == 1;
        let frame = stack.top()?;
        let step = match frame.kind {
            Kind::Array => array_step(cur, frame)?,
            Kind::Object => match object_step(cur, frame, at_root)? {
                ObjectStep::Close => Step::Close,
                ObjectStep::Member { is_retry, value } => {
                    if at_root {
                        member_is_retry = is_retry;
                    }
                    value
                }
            },
        };
        let finished = match step {
            Step::Open(kind) => {
                stack.push(kind)?;
                continue;
            }
            Step::Scalar(scalar) => scalar,
            Step::Close => {
                let closed = stack.pop()?;
                if stack.len == 0 {
                    return Ok(flag);
                }
                closed.conversion()
            }
        };
        let parent_is_root = stack.len == 1;
        let parent = stack.top()?;
        match parent.kind {
            Kind::Array => parent.add_element(finished),
            Kind::Object if parent_is_root && member_is_retry => flag = finished,
            Kind::Object => {}
        }
    }
}

/// The next event in an open array (Gson's `doPeek` for array scopes,
/// including lenient empty elements, which are nulls).
fn array_step(cur: &mut Cursor<'_>, frame: &mut Frame) -> Parsed<Step> {
    let was_empty = !frame.nonempty;
    if frame.nonempty {
        match cur.peek_significant()? {
            Some(b']') => {
                cur.bump();
                return Ok(Step::Close);
            }
            Some(b',' | b';') => cur.bump(),
            _ => return Err(Malformed),
        }
    }
    frame.nonempty = true;
    match cur.peek_significant()?.ok_or(Malformed)? {
        b']' if was_empty => {
            cur.bump();
            Ok(Step::Close)
        }
        // `[1,,2]`, `[,1]` and `[1,]`: the missing element is null and the
        // separator is read again as the next element's separator.
        b']' | b',' | b';' => Ok(Step::Scalar(RetryFlag::Absent)),
        _ => start_value(cur),
    }
}

/// The next event in an open object.
enum ObjectStep {
    Close,
    Member { is_retry: bool, value: Step },
}

/// Gson's `doPeek` for object scopes: a separator (`,` or `;`) unless the
/// object is empty, then a name (double-quoted, single-quoted or unquoted),
/// a name separator (`:`, `=` or `=>`) and the start of the value. A `}`
/// right after a separator is an error (no trailing comma).
fn object_step(cur: &mut Cursor<'_>, frame: &mut Frame, at_root: bool) -> Parsed<ObjectStep> {
    if frame.nonempty {
        match cur.peek_significant()? {
            Some(b'}') => {
                cur.bump();
                return Ok(ObjectStep::Close);
            }
            Some(b',' | b';') => cur.bump(),
            _ => return Err(Malformed),
        }
    }
    let mut name = Matcher::RETRY_NAME;
    match cur.peek_significant()?.ok_or(Malformed)? {
        quote @ (b'"' | b'\'') => {
            cur.bump();
            scan_quoted(cur, quote, &mut name)?;
        }
        b'}' if !frame.nonempty => {
            cur.bump();
            return Ok(ObjectStep::Close);
        }
        byte if is_literal(byte) => scan_unquoted(cur, &mut name),
        _ => return Err(Malformed),
    }
    frame.nonempty = true;
    read_name_separator(cur)?;
    let value = match cur.peek_significant()?.ok_or(Malformed)? {
        b']' | b',' | b';' => return Err(Malformed),
        _ => start_value(cur)?,
    };
    Ok(ObjectStep::Member {
        is_retry: at_root && name.is_match(),
        value,
    })
}

fn read_name_separator(cur: &mut Cursor<'_>) -> Parsed<()> {
    match cur.peek_significant()? {
        Some(b':') => cur.bump(),
        Some(b'=') => {
            cur.bump();
            if cur.peek() == Some(b'>') {
                cur.bump();
            }
        }
        _ => return Err(Malformed),
    }
    Ok(())
}

#[cfg(test)]
mod tests;

// Does the parity certificate beside an engine describe it?  NAME.<suffix>.parity.json (or, from
// exports before 0.2, NAME.parity.json when its "engine" field names this file) records the SHA-256
// of the engine's files (engine_sha256; the .xml and its .bin for OpenVINO), written by
// anyir-export after the engine was placed (anyir_edge/artifact.py: certificate_mismatch is the
// Python twin).  A mismatch means the engine was replaced or edited after it was verified.
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "engine.hpp"

#ifdef ANYIR_WITH_OPENSSL
#include <openssl/evp.h>
#endif

namespace anyir {
namespace detail {
namespace {

std::string with_suffix(const std::string& path, const std::string& suffix) {
  const size_t slash = path.find_last_of('/');
  const size_t dot = path.find_last_of('.');
  const std::string stem = (dot == std::string::npos || (slash != std::string::npos && dot < slash)) ? path
                                                                                                     : path.substr(0, dot);
  return stem + suffix;
}

bool read_file(const std::string& path, std::string& out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  std::ostringstream s;
  s << f.rdbuf();
  out = s.str();
  return true;
}

// the string value of "key" in a JSON document (flat scan: the certificate writes it as a plain string)
std::string json_string(const std::string& doc, const std::string& key) {
  const std::string needle = "\"" + key + "\"";
  size_t p = doc.find(needle);
  if (p == std::string::npos) return "";
  p = doc.find(':', p + needle.size());
  if (p == std::string::npos) return "";
  p = doc.find('"', p);
  if (p == std::string::npos) return "";
  const size_t e = doc.find('"', p + 1);
  return e == std::string::npos ? "" : doc.substr(p + 1, e - p - 1);
}

}  // namespace

std::string certificate_warning(const std::string& engine_path) {
  std::string cert_path = engine_path + ".parity.json";
  std::string doc;
  if (!read_file(cert_path, doc)) {
    cert_path = with_suffix(engine_path, ".parity.json");  // before 0.2: NAME.parity.json
    if (!read_file(cert_path, doc)) return "";
    const size_t slash = engine_path.find_last_of('/');
    const std::string named = json_string(doc, "engine");
    if (!named.empty() && named != engine_path.substr(slash == std::string::npos ? 0 : slash + 1)) return "";
  }
  const std::string want = json_string(doc, "engine_sha256");
  if (want.empty()) return "";  // written before certificates recorded the digest
#ifdef ANYIR_WITH_OPENSSL
  std::vector<std::string> files{engine_path};
  if (with_suffix(engine_path, ".xml") == engine_path) files.push_back(with_suffix(engine_path, ".bin"));
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    if (!in) {
      EVP_MD_CTX_free(ctx);
      return "cannot read " + f + " to compare it with its certificate";
    }
    std::vector<char> buf(1 << 20);
    while (in) {
      in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      if (in.gcount() > 0) EVP_DigestUpdate(ctx, buf.data(), static_cast<size_t>(in.gcount()));
    }
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx, md, &n);
  EVP_MD_CTX_free(ctx);
  std::string have;
  char hex[3];
  for (unsigned int i = 0; i < n; ++i) {
    std::snprintf(hex, sizeof hex, "%02x", md[i]);
    have += hex;
  }
  if (have == want) return "";
  const size_t slash = cert_path.find_last_of('/');
  return engine_path + ": its certificate " + cert_path.substr(slash == std::string::npos ? 0 : slash + 1) +
         " was made for another engine file (digest " + want.substr(0, 12) + "..., this file " + have.substr(0, 12) +
         "...): the engine was replaced or modified after it was verified";
#else
  return "";  // built without OpenSSL: the digest cannot be computed
#endif
}

}  // namespace detail
}  // namespace anyir

// Prints dlib's separable form of its frontal face detector's filters (what its scanner runs): per filter and
// HOG plane, the terms (column vector, row vector) of build_fhog_filterbank, as JSON.
#include <dlib/image_processing/frontal_face_detector.h>
#include <cstdio>
using namespace dlib;
int main() {
    frontal_face_detector d = get_frontal_face_detector();
    const auto& s = d.get_scanner();
    printf("[");
    for (unsigned long i = 0; i < d.num_detectors(); i++) {
        auto fb = s.build_fhog_filterbank(d.get_w(i));
        printf("%s[", i ? "," : "");
        for (size_t p = 0; p < fb.row_filters.size(); p++) {
            printf("%s[", p ? "," : "");
            for (size_t j = 0; j < fb.row_filters[p].size(); j++) {
                printf("%s{\"col\":[", j ? "," : "");
                for (long m = 0; m < fb.col_filters[p][j].size(); m++) printf("%s%.9g", m ? "," : "", fb.col_filters[p][j](m));
                printf("],\"row\":[");
                for (long m = 0; m < fb.row_filters[p][j].size(); m++) printf("%s%.9g", m ? "," : "", fb.row_filters[p][j](m));
                printf("]}");
            }
            printf("]");
        }
        printf("]");
    }
    printf("]\n");
}
